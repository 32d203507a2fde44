"""The ``raycross`` command line: train, mine, evaluate, predict, tune and quickstart from YAML configs.

Every command reads a YAML config (see :mod:`raycross.config`), applies ``--set dotted.key=value``
overrides and the convenience flags, parses the whole config into a typed
:class:`~raycross.config.RunSpec` (errors name the bad key) before any model, data or Ray worker is
loaded, then runs. ``--dry-run`` prints the resolved config and stops. This module is argparse and the
commands only: everything a command builds comes from :mod:`raycross.config`.

Example:
    $ raycross train --config jobs/configs/reranker_bce.yaml --set training.learning_rate=3e-5 --max-steps 100
    $ raycross mine --config jobs/configs/mine_hard_negatives.yaml --output mined/
    $ raycross evaluate --config jobs/configs/reranker_bce.yaml --model outputs/reranker-bce
    $ raycross predict --model outputs/reranker-bce --input pairs.parquet --output scores.parquet
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raycross import config as cfg
from raycross.config import ConfigError, RunSpec
from raycross.config.build import build_evaluator, build_model, build_training
from raycross.config.sources import SOURCE_KINDS

logger = logging.getLogger("raycross.cli")

EPILOG = """\
config sections (YAML): model, data, loss, evaluator, training, mining, teacher, tune, evaluate, predict.
A data source is one of {path: FILE|DIR|[FILES]}, {bundled: wordnet-mini/train.parquet} or
{hub: ID, subset, split}, with optional offline (a source used when HF_HUB_OFFLINE=1), columns,
rename, label_map, limit, shuffle, seed. Strings may use ${VAR} and ${VAR:-default}.
Losses, evaluators and activations are named by registry name (BinaryCrossEntropyLoss, reranking) or
dotted path (torch.nn.Sigmoid). Overrides: --set training.learning_rate=3e-5 --set data.train.limit=1000
(values are YAML). Ready-made recipes: jobs/configs/*.yaml; cluster setup and `ray job submit`: cluster/README.md.
Output: progress and a summary table on stderr; the result as JSON on stdout when it is not a terminal
(or with --json). Exit codes: 0 success, 1 the run failed, 2 bad command line/config/input,
3 a needed component is missing, 130 interrupted.
"""


# ------------------------------------------------------------------------------------------ parser
def _common(parser: argparse.ArgumentParser, config_required: bool = False) -> None:
    parser.add_argument("-c", "--config", required=config_required, metavar="YAML",
                        help="YAML run config (see jobs/configs/ for recipes)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key by dotted path, e.g. --set training.learning_rate=3e-5 "
                             "(repeatable; the value is parsed as YAML)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the config, print it resolved (YAML) and exit without running")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level of raycross's messages (overrides --quiet/--verbose)")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="warnings, errors and the final summary only (no progress bars)")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="everything: timestamps, logger names, library messages, tracebacks")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout even on a terminal")


def _training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", dest="model", metavar="NAME_OR_PATH",
                        help="model to fine-tune (sets model.name_or_path)")
    parser.add_argument("--output-dir", help="where the final model and checkpoints go (training.output_dir)")
    parser.add_argument("--num-workers", type=int,
                        help="Ray Train workers; 0 trains in this process (training.num_workers)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (training.max_steps)")
    parser.add_argument("--epochs", type=float, help="training.num_train_epochs")
    parser.add_argument("--learning-rate", type=float, help="training.learning_rate")
    parser.add_argument("--batch-size", type=int, help="per-worker batch size (training.per_device_train_batch_size)")
    parser.add_argument("--storage-path", help="shared checkpoint storage for multi-node runs (training.storage_path)")
    parser.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None,
                        help="one GPU per worker (training.use_gpu; default: use one when available)")


_FLAG_KEYS = {
    "train": {"output_dir": "training.output_dir", "num_workers": "training.num_workers",
              "max_steps": "training.max_steps", "epochs": "training.num_train_epochs",
              "learning_rate": "training.learning_rate", "batch_size": "training.per_device_train_batch_size",
              "storage_path": "training.storage_path", "use_gpu": "training.use_gpu"},
    "mine": {"output": "mining.output_path", "num_negatives": "mining.num_negatives",
             "output_format": "mining.output_format"},
    "score": {"teacher": "teacher.model", "output": "teacher.output_path", "batch_size": "teacher.batch_size",
              "execution": "teacher.execution", "num_workers": "teacher.num_workers", "use_gpu": "teacher.use_gpu"},
    "evaluate": {"output": "evaluate.output_path"},
    "predict": {"output": "predict.output_path", "batch_size": "predict.batch_size"},
}
_FLAG_KEYS["tune"] = {**_FLAG_KEYS["train"], "num_samples": "tune.num_samples"}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``raycross`` and its subcommands.

    Example:
        >>> build_parser().parse_args(["train", "-c", "x.yaml", "--max-steps", "5"]).max_steps
        5
    """
    parser = argparse.ArgumentParser(
        prog="raycross",
        description="Train cross-encoders (rerankers, pair classifiers) at cluster scale on Ray.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from raycross import __version__

    parser.add_argument("--version", action="version", version=f"raycross {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "train", help="fine-tune a cross-encoder (optionally mining hard negatives first)", formatter_class=fmt,
        description="Fine-tune a cross-encoder from a YAML config: load data (and mine hard negatives when the "
                    "config has a `mining` section, or score them with a `teacher`), build the loss and evaluator, "
                    "train with CrossEncoderTrainer (in-process or on Ray Train workers) and save the final model "
                    "(with its trainer state and model card) to training.output_dir.\n\nNeeds sections: model, data.train, loss, training.",
        epilog=EPILOG)
    _common(p, config_required=True)
    _training_flags(p)

    p = sub.add_parser(
        "mine", help="mine hard negatives for a dataset and write them as parquet files", formatter_class=fmt,
        description="Mine hard negatives for data.train against data.corpus (and the dataset's own positives) "
                    "with mining.model, distributed over Ray, and stream the rows to parquet files in the "
                    "directory mining.output_path.\n\nNeeds sections: data.train, mining.",
        epilog=EPILOG)
    _common(p, config_required=True)
    p.add_argument("--model", dest="model", metavar="NAME_OR_PATH", help="embedding model (sets mining.model)")
    p.add_argument("--output", help="output directory of the parquet files (mining.output_path)")
    p.add_argument("--num-negatives", type=int, help="mining.num_negatives")
    p.add_argument("--output-format", choices=["triplet", "n-tuple", "labeled-pair", "labeled-list"],
                   help="mining.output_format")

    p = sub.add_parser(
        "score", help="label rows with a teacher's scores (distillation) and write them as parquet files",
        formatter_class=fmt,
        description="Score every (query, document) of every row of data.train (after mining hard negatives when "
                    "the config has a `mining` section) with teacher.model, on a Ray Data actor pool (GPU actors "
                    "when the cluster has GPUs) or in this process, and stream the rows with the teacher's scores "
                    "as labels to parquet files in teacher.output_path. A rerun continues where it stopped. "
                    "Train a student on the directory with MSELoss, MarginMSELoss or a listwise loss."
                    "\n\nNeeds sections: data.train, teacher.",
        epilog=EPILOG)
    _common(p, config_required=True)
    p.add_argument("--teacher", metavar="NAME_OR_PATH", help="teacher cross-encoder (teacher.model)")
    p.add_argument("--output", help="output directory of the parquet files (teacher.output_path)")
    p.add_argument("--batch-size", type=int, help="pairs per teacher forward pass (teacher.batch_size)")
    p.add_argument("--execution", choices=["auto", "ray", "local"], help="teacher.execution")
    p.add_argument("--num-workers", type=int, help="actors in the scoring pool (teacher.num_workers)")
    p.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="GPU actors (teacher.use_gpu; default: when the cluster has GPUs)")

    p = sub.add_parser(
        "evaluate", help="evaluate a model with the config's evaluator(s)", formatter_class=fmt,
        description="Load model (or --model) and run the `evaluator` section; print the metrics as JSON and "
                    "optionally write them to evaluate.output_path.\n\nNeeds sections: model, evaluator.",
        epilog=EPILOG)
    _common(p)
    p.add_argument("--model", dest="model", metavar="NAME_OR_PATH", help="model to evaluate (model.name_or_path)")
    p.add_argument("--output", help="write the metrics JSON here (evaluate.output_path)")

    p = sub.add_parser(
        "predict", help="score (text_a, text_b) pairs from a file", formatter_class=fmt,
        description="Score the pairs of data.input (its first two input columns) with the model and write "
                    "them with a `score` column to predict.output_path (.parquet/.jsonl/.json/.csv), or print "
                    "JSON lines. With predict.num_actors the scoring runs on a Ray Data actor pool.",
        epilog=EPILOG)
    _common(p)
    p.add_argument("--model", dest="model", metavar="NAME_OR_PATH", help="model to score with (model.name_or_path)")
    p.add_argument("--input", help="pairs file or directory (data.input.path)")
    p.add_argument("--output", help="output file (predict.output_path); default: JSON lines on stdout")
    p.add_argument("--batch-size", type=int, help="predict.batch_size")

    p = sub.add_parser(
        "tune", help="hyperparameter sweep on Ray Tune", formatter_class=fmt,
        description="Run a Ray Tune sweep over the training config: each trial is a training run; the `tune` "
                    "section holds the search space, trial count, metric and scheduler. Calls "
                    "raycross.tune.run_sweep_from_config.\n\nNeeds sections: model, data.train, loss, training, tune.",
        epilog=EPILOG)
    _common(p, config_required=True)
    _training_flags(p)
    p.add_argument("--num-samples", type=int, help="number of trials (tune.num_samples)")

    p = sub.add_parser(
        "quickstart", help="offline end-to-end demo: mine, train and evaluate a WordNet reranker",
        formatter_class=fmt,
        description="Fine-tune MiniLM into a word-sense reranker on the bundled WordNet data, offline, in "
                    "minutes; prints the metrics before and after and where the model was saved. Options may "
                    "also come from a `quickstart` section of a config.")
    _common(p)
    _quickstart_flags(p)
    return parser


def _quickstart_flags(parser: argparse.ArgumentParser) -> None:
    """Flags generated from ``raycross.quickstart.run_quickstart``'s signature (kept in step with it)."""
    from raycross.quickstart import run_quickstart

    for param in inspect.signature(run_quickstart).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name == "log":
            continue
        default = param.default if param.default is not param.empty else None
        kind = type(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else None
        if "int" in str(param.annotation) and kind is None:
            kind = int
        if "float" in str(param.annotation) and kind in (None, int):
            kind = float
        parser.add_argument(f"--{param.name.replace('_', '-')}", dest=f"qs_{param.name}", type=kind or str,
                            default=None, help=f"run_quickstart({param.name}=...), default: {default}")


# ------------------------------------------------------------------------------------- config setup
def resolve_spec(args: argparse.Namespace) -> RunSpec:
    """Load, override and parse the config of a parsed command line into a :class:`~raycross.config.RunSpec`.

    Example:
        >>> args = build_parser().parse_args(["predict", "--model", "m", "--input", "x.parquet"])
        >>> resolve_spec(args)  # doctest: +SKIP
    """
    values = {key: getattr(args, flag, None) for flag, key in _FLAG_KEYS.get(args.command, {}).items()}
    model = getattr(args, "model", None)
    if model is not None:
        values["mining.model" if args.command == "mine" else "model.name_or_path"] = model
    config = cfg.read_config(args.config, args.overrides, values)
    if getattr(args, "input", None) is not None:
        # --input replaces the config's input source, keeping its columns/rename/limit options.
        source = (config.get("data") or {}).get("input") or {}
        kept = {k: v for k, v in source.items() if k not in (*SOURCE_KINDS, "subset", "split", "revision", "offline")}
        config.setdefault("data", {})["input"] = {"path": cfg.expand_env(args.input, "data.input.path"), **kept}
    if model is not None and args.command != "mine" and isinstance(config.get("model"), dict):
        config["model"].pop("offline", None)  # an explicit --model is never swapped for the offline default
    if args.command == "quickstart":
        options = {name[3:]: value for name, value in vars(args).items() if name.startswith("qs_") and value is not None}
        if options:
            config.setdefault("quickstart", {}).update(options)
    return cfg.parse_config(config, args.command)


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """The validated config mapping of a parsed command line (:func:`resolve_spec`'s ``raw``).

    Example:
        >>> resolve_config(build_parser().parse_args(["quickstart"]))
        {}
    """
    return resolve_spec(args).raw


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raycross`` console script; returns the exit code.

    Exit codes (:data:`raycross.console.EXIT_CODES`): 0 success, 1 the run failed, 2 bad command line,
    config or input (the message names the key), 3 a needed component is missing, 130 interrupted.

    Example:
        >>> main(["train", "--config", "jobs/configs/reranker_bce.yaml", "--dry-run"])  # doctest: +SKIP
    """
    from raycross import console

    parser = build_parser()
    args = parser.parse_args(argv)
    console.configure_output("quiet" if args.quiet else "verbose" if args.verbose else "normal")
    if args.log_level:
        logging.getLogger("raycross").setLevel(getattr(logging, args.log_level))
    try:
        try:
            spec = resolve_spec(args)
        except FileNotFoundError as exc:  # the config file itself
            raise ConfigError("", str(exc)) from None
        if args.dry_run:
            import yaml

            sys.stdout.write(yaml.safe_dump(spec.raw, sort_keys=False))
            return console.EXIT_OK
        if args.command != "quickstart":
            _connect_to_job_cluster()
        result = COMMANDS[args.command](spec)
    except ConfigError as exc:
        # The message names the key; no traceback for a config mistake.
        sys.stderr.write(f"raycross {args.command}: error: {exc}\n")
        return console.EXIT_USAGE
    except ImportError as exc:  # an optional component the command needs
        sys.stderr.write(f"raycross {args.command}: error: {exc}\n")
        return console.EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        sys.stderr.write(f"raycross {args.command}: interrupted\n")
        return console.EXIT_INTERRUPTED
    except (ValueError, TypeError) as exc:  # checks before work starts name the argument or column
        if args.verbose:
            logger.exception("raycross %s failed", args.command)
        sys.stderr.write(f"raycross {args.command}: error: {exc}\n")
        return console.EXIT_USAGE
    except Exception as exc:
        if args.verbose:
            logger.exception("raycross %s failed", args.command)
        sys.stderr.write(f"raycross {args.command}: failed: {type(exc).__name__}: {exc}\n"
                         + ("" if args.verbose else "(rerun with --verbose for the traceback)\n"))
        return console.EXIT_FAILED
    sys.stderr.write("\n" + console.result_table(args.command, result) + "\n")
    if args.json or not sys.stdout.isatty():
        sys.stdout.write(json.dumps({"command": args.command, **result}, indent=2, default=str) + "\n")
    return console.EXIT_OK


# ------------------------------------------------------------------------------------ job environment
def _job_context() -> dict[str, Any]:
    """Where this process runs: the Ray job submission id when started by `ray job submit`."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except ValueError:
        return {}
    job_id = metadata.get("job_submission_id")
    return {"ray_job_submission_id": job_id} if job_id else {}


def _connect_to_job_cluster() -> None:
    """Inside a Ray job, connect to its cluster once, up front, with the job's own runtime env.

    Mining, training and Ray scoring then share this connection instead of each calling ``ray.init``
    with runtime envs of their own (which Ray refuses to merge with the job's when keys overlap).
    """
    if not _job_context():
        return
    import ray

    if not ray.is_initialized():
        from raycross.ray_connect import init_ray

        context = init_ray(log_to_driver=True)
        logger.info("connected to the Ray cluster; dashboard: %s", getattr(context, "dashboard_url", None) or "n/a")


def _locations(args: Any) -> dict[str, str]:
    """Where the model, checkpoints and logs of a training run go (the trainer's layout)."""
    from raycross.training.location import RunLocation

    location = RunLocation.from_args(args)
    output_dir, run_dir = location.output_dir, location.run_dir
    logs = args.logging_dir or f"{output_dir}/runs/{args.run_name}"
    return {
        "output_dir": output_dir,
        "final_model": output_dir,
        "checkpoints": f"{run_dir}/checkpoint-<step>",
        "tensorboard_logs": logs if "tensorboard" in (args.report_to or []) else "off (training.report_to: tensorboard)",
        "dashboard_metric": f'ray_raycross_train_metric{{run="{args.run_name}"}} (Ray dashboard, Metrics)',
    }


# ----------------------------------------------------------------------------------------- commands
def run_train(spec: RunSpec) -> dict[str, Any]:
    """``raycross train``: prepare the data (load, mine, teacher), train; returns the paths and the final metrics.

    Example:
        >>> run_train(cfg.parse_config(cfg.load_config("jobs/configs/reranker_bce.yaml"), "train"))  # doctest: +SKIP
    """
    from raycross.training import CrossEncoderTrainer
    from raycross.training.dashboard import RayDashboardMetrics

    started = time.perf_counter()
    args = spec.training
    where = _locations(args)
    job = _job_context()
    for name, value in {**where, **job}.items():
        logger.info("%s: %s", name, value)
    if job:
        logger.info("follow this job: `ray job logs --follow %s` or the Jobs tab of the Ray dashboard "
                    "(port 8265); training metrics appear under its Train tab", job["ray_job_submission_id"])
    parts = build_training(spec)
    parts.callbacks.append(RayDashboardMetrics(args.run_name))
    result = CrossEncoderTrainer(**parts.trainer_kwargs()).train()
    # The trainer wrote the final model (best one with load_best_model_at_end) to output_dir.
    _save_config(spec.raw, Path(where["output_dir"]) / "raycross_config.yaml")
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    logger.info("final metrics: %s", json.dumps(metrics))
    logger.info("final model in %s; load it with raycross.CrossEncoder(%r)", where["final_model"], where["final_model"])
    return {**where, **job, "global_step": result.global_step, "best_checkpoint": result.best_checkpoint,
            "best_metric": result.best_metric, "last_checkpoint": result.last_checkpoint, "metrics": metrics,
            "seconds": round(time.perf_counter() - started, 1)}


def _save_config(config: Mapping[str, Any], path: Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf8")


def run_mine(spec: RunSpec) -> dict[str, Any]:
    """``raycross mine``: mine hard negatives for data.train and write them to mining.output_path.

    Example:
        >>> run_mine(cfg.parse_config(cfg.load_config("jobs/configs/mine_hard_negatives.yaml"), "mine"))  # doctest: +SKIP
    """
    from raycross.config.prepare import mine

    return _write_rows(spec, "mining", lambda train: mine(spec.mining, train, spec.data.corpus))


def run_score(spec: RunSpec) -> dict[str, Any]:
    """``raycross score``: mine (when configured), then score data.train with the teacher into teacher.output_path.

    Example:
        >>> run_score(cfg.parse_config(cfg.load_config("jobs/configs/distill_listwise.yaml"), "score"))  # doctest: +SKIP
    """
    from raycross.config.prepare import training_rows

    result = _write_rows(spec, "teacher scoring", lambda train: training_rows(spec, train))
    return {**result, "teacher": spec.teacher.model.resolve("teacher.model")}


def _write_rows(spec: RunSpec, what: str, produce: Any) -> dict[str, Any]:
    """Run `produce` on the one data.train dataset; the parquet output it returns, summarised."""
    import pyarrow.parquet as pq

    from raycross.data import data_files

    started = time.perf_counter()
    if isinstance(spec.data.train, dict):
        raise ConfigError("data.train", f"{what} takes a single dataset; give one source")
    path = Path(produce(spec.data.train.load()))
    files = data_files(path)  # the data files only (not the runs' markers and manifests)
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    columns = list(pq.read_schema(files[0]).names)
    logger.info("%d rows with columns %s -> %s", rows, columns, path)
    return {"output_path": str(path), "files": len(files), "rows": rows, "columns": columns, **_job_context(),
            "seconds": round(time.perf_counter() - started, 1)}


def run_evaluate(spec: RunSpec) -> dict[str, Any]:
    """``raycross evaluate``: run the evaluator(s) on the model and return the metrics.

    Example:
        >>> run_evaluate(cfg.parse_config({"model": ..., "evaluator": ...}, "evaluate"))  # doctest: +SKIP
    """
    evaluator = build_evaluator(spec.evaluator)
    model = build_model(spec.model)
    metrics = {k: float(v) for k, v in evaluator(model).items()}
    out = spec.evaluate.get("output_path")
    result: dict[str, Any] = {"model": model.model_name_or_path, "metrics": metrics}
    if out:
        path = Path(out).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2), encoding="utf8")
        result["output_path"] = str(path)
    return result


def run_predict(spec: RunSpec) -> dict[str, Any]:
    """``raycross predict``: score the pairs of data.input; write them with a `score` column or print them.

    Example:
        >>> run_predict(cfg.parse_config({"model": {"name_or_path": "m"}, "data": {"input": {"path": "p.csv"}}},
        ...                              "predict"))  # doctest: +SKIP
    """
    import numpy as np

    from raycross.data import split_columns, to_arrow, write_file

    options = spec.predict
    dataset = spec.data.input.load()
    inputs, _ = split_columns(dataset.column_names)
    if len(inputs) < 2:
        raise ConfigError("data.input.columns", f"predict needs two text columns, found inputs {inputs}")
    pairs = list(zip(dataset[inputs[0]], dataset[inputs[1]]))
    model = build_model(spec.model)
    batch_size = options.get("batch_size") or 32
    activation = options["activation_fn"].build() if options.get("activation_fn") is not None else None
    if options.get("num_actors"):
        if activation is not None or options.get("apply_softmax"):
            raise ConfigError("predict.num_actors", "Ray scoring applies the model's own activation; "
                                                    "drop activation_fn/apply_softmax or num_actors")
        from raycross.evaluation import score_pairs_with_ray

        scores = score_pairs_with_ray(model, pairs, batch_size=batch_size, num_actors=options["num_actors"],
                                      num_cpus_per_actor=options.get("num_cpus_per_actor", 1),
                                      num_gpus_per_actor=options.get("num_gpus_per_actor", 0))
    else:
        scores = model.predict(pairs, batch_size=batch_size, activation_fn=activation,
                               apply_softmax=bool(options.get("apply_softmax")),
                               show_progress_bar=options.get("show_progress_bar"))
    scores = np.asarray(scores, dtype=np.float64).reshape(len(pairs), -1)
    values = scores[:, 0].tolist() if scores.shape[1] == 1 else scores.tolist()
    column = "score" if scores.shape[1] == 1 else "scores"
    result: dict[str, Any] = {"model": model.model_name_or_path, "rows": len(pairs)}
    if options.get("output_path"):
        try:
            result["output_path"] = write_file(to_arrow(dataset.add_column(column, values)), options["output_path"])
        except ValueError as exc:
            raise ConfigError("predict.output_path", str(exc)) from None
    else:
        for (a, b), value in zip(pairs, values):
            sys.stdout.write(json.dumps({inputs[0]: a, inputs[1]: b, column: value}) + "\n")
    return result


def run_tune(spec: RunSpec) -> dict[str, Any]:
    """``raycross tune``: a Ray Tune sweep through ``raycross.tune.run_sweep_from_config``.

    Example:
        >>> run_tune(cfg.parse_config(cfg.load_config("jobs/configs/hpo_sweep.yaml"), "tune"))  # doctest: +SKIP
    """
    from raycross.tune import run_sweep_from_config

    result = run_sweep_from_config(spec)
    return dict(result) if isinstance(result, Mapping) else {"result": result}


def run_quickstart_command(spec: RunSpec) -> dict[str, Any]:
    """``raycross quickstart``: ``raycross.quickstart.run_quickstart(**options)``, printing its progress.

    Example:
        >>> run_quickstart_command(cfg.parse_config({"quickstart": {"output_dir": "qs", "max_steps": 20}}, "quickstart"))  # doctest: +SKIP
    """
    from raycross.quickstart import run_quickstart

    options = dict(spec.quickstart)

    def log(line: str) -> None:
        from tqdm.auto import tqdm

        if logging.getLogger("raycross").isEnabledFor(logging.INFO):
            tqdm.write(line, file=sys.stderr)  # above any open progress bar

    if "log" in inspect.signature(run_quickstart).parameters:
        options["log"] = log
    result = run_quickstart(**options)
    return dict(result) if isinstance(result, Mapping) else {"result": result}


COMMANDS = {
    "train": run_train,
    "mine": run_mine,
    "score": run_score,
    "evaluate": run_evaluate,
    "predict": run_predict,
    "tune": run_tune,
    "quickstart": run_quickstart_command,
}


if __name__ == "__main__":
    sys.exit(main())
