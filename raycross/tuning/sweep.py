"""``tune_cross_encoder``: a hyperparameter sweep of cross-encoder training runs on Ray Tune.

Order of work: check every input (search-space names and values, the loss, the metric against the
keys the evaluations will produce) on the driver, then size the trials to the cluster, run them
(ASHA stops weak ones after their evaluations), collect one row per trial, write the CSV, export the
best trial's model.

Example:
    >>> result = tune_cross_encoder(
    ...     "microsoft/MiniLM-L12-H384-uncased", train_dataset, evaluator=evaluator,
    ...     base_args=CrossEncoderTrainingArguments("outputs/sweep", max_steps=500, eval_strategy="steps",
    ...                                             eval_steps=100),
    ...     search_space={"learning_rate": {"loguniform": [1e-5, 1e-4]},
    ...                   "per_device_train_batch_size": {"choice": [16, 32]}},
    ...     num_samples=8)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
    >>> CrossEncoder(result.best_model_dir).predict([("query", "passage")])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raycross.tuning.metrics import resolve_metric
from raycross.tuning.results import (
    BASELINE,
    SweepResult,
    export_model,
    order_rows,
    trial_row,
    write_csv,
)
from raycross.tuning.space import SearchSpace, loss_accepts, resolve_loss
from raycross.tuning.trial import TrialSetup, run_trial, trial_dirname

logger = logging.getLogger("raycross.tune")

SEARCH_ALGS = ("random", "grid", "optuna")
SCHEDULERS = ("asha", "fifo")
DEFAULT_NUM_SAMPLES = 8
DRIVER_CPU = 0.001  # what a trial with Ray Train workers holds itself (Tune needs a non-empty bundle)


@dataclass
class TrialResources:
    """What one trial holds and how many run side by side."""

    trial: dict[str, float]
    max_concurrent_trials: int
    per_trial_cpu: float
    per_trial_gpu: float


def tune_cross_encoder(
    model_name_or_path: str | os.PathLike,
    train_dataset: Any,
    eval_dataset: Any = None,
    evaluator: Any = None,
    loss: Any = "BinaryCrossEntropyLoss",
    loss_kwargs: Mapping[str, Any] | None = None,
    base_args: Any = None,
    search_space: Mapping[str, Any] | None = None,
    metric: str | None = None,
    mode: str | None = None,
    num_samples: int | None = None,
    scheduler: Any = "asha",
    grace_period: int = 1,
    reduction_factor: float = 2,
    max_t: int | None = None,
    search_alg: Any = "random",
    max_concurrent_trials: int | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    storage_path: str | None = None,
    name: str | None = None,
    resume: bool = False,
    export_dir: str | os.PathLike | bool | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    evaluate_base_model: bool = False,
    seed: int | None = None,
    verbose: int = 1,
) -> SweepResult:
    """Run a Ray Tune sweep; every trial trains a CrossEncoder from `model_name_or_path`.

    Args:
        model_name_or_path: the model each trial starts from (a directory or a hub id).
        train_dataset, eval_dataset, evaluator: as for :class:`~raycross.CrossEncoderTrainer`.
        loss: a ``raycross.losses`` class name (or class) used by every trial unless ``loss`` is searched.
        loss_kwargs: fixed loss arguments (searched ``loss.<argument>`` values override them).
        base_args: :class:`~raycross.CrossEncoderTrainingArguments` (or a dict of its fields) that every
            trial starts from; it must evaluate during training (``eval_strategy`` ``steps``/``epoch``).
            ``num_workers=0`` runs each trial in its Tune process; ``num_workers=N`` gives each trial N
            Ray Train workers. ``output_dir`` is where the sweep writes (experiment, CSV, best model).
        search_space: ``{name: distribution}``; see :mod:`raycross.tuning.space` for names and values.
        metric: reported key to optimize (default ``eval_`` + the evaluator's primary metric, else
            ``eval_loss``); with or without the ``eval_`` prefix.
        mode: ``"max"``/``"min"`` (default: the evaluator's direction, ``min`` for losses).
        num_samples: trials to sample (default 8; with ``search_alg="grid"``: repeats of the grid, default 1).
        scheduler: ``"asha"`` (default: stops weak trials after their evaluations), ``"fifo"``/None (no
            early stopping), or a Ray Tune ``TrialScheduler``.
        grace_period: evaluations a trial runs before ASHA may stop it.
        reduction_factor: ASHA keeps the best 1/reduction_factor of the trials at each rung.
        max_t: ASHA's horizon in evaluations: rungs at ``grace_period * reduction_factor**k`` up to it
            (default: one less than the evaluations a trial makes, estimated from the arguments).
        search_alg: ``"random"``, ``"grid"`` (every ``choice`` becomes a grid), ``"optuna"`` (needs
            ``pip install 'raycross[optuna]'``) or a Ray Tune ``Searcher``.
        max_concurrent_trials: trials at once (default: as many as the cluster fits).
        cpus_per_trial, gpus_per_trial: resources of an in-process trial (default 1 CPU; 1 GPU when the
            cluster has GPUs and ``use_gpu`` is not False). Trials with workers use ``resources_per_worker``.
        storage_path, name: the experiment goes to ``storage_path/name`` (default: ``base_args.output_dir``;
            ``base_args.storage_path`` when set, e.g. a bucket URI for multi-node clusters).
        resume: continue the experiment at ``storage_path/name`` (finished trials are kept, unfinished
            and failed ones continue from their last checkpoint, pending ones start).
        export_dir: where the best trial's model goes (default ``<output_dir>/best_model``; False: no export).
        model_kwargs: fixed CrossEncoder arguments (e.g. ``{"num_labels": 1, "max_length": 256}``).
        evaluate_base_model: evaluate the untrained model once on the driver (a ``base model`` row).
        seed: seed of the random / Optuna search.
        verbose: Ray Tune's console verbosity (0 silent, 1 status, 2 every result).

    Returns:
        :class:`~raycross.tuning.results.SweepResult`: the table (also in ``csv_path``), the best trial,
        its parameters, metric, checkpoint and exported model directory.
    """
    import ray
    from ray import tune

    from raycross.model import CrossEncoder

    # ---------------------------------------------------------------- checks (no trial has started)
    base = _base_training(base_args)
    space = SearchSpace.parse(search_space if search_space is not None else {})
    if search_alg not in SEARCH_ALGS and not _is_searcher(search_alg):
        raise ValueError(f"search_alg: expected one of {list(SEARCH_ALGS)} or a ray.tune Searcher, found {search_alg!r}")
    alg_name = search_alg if isinstance(search_alg, str) else "custom"
    loss_kwargs = dict(loss_kwargs or {})
    resolve_loss(loss)
    space.validate(base, loss)
    if space.get("loss") is None:
        unknown = [k for k in loss_kwargs if not loss_accepts(resolve_loss(loss), k)]
        if unknown:
            raise ValueError(f"loss_kwargs: {resolve_loss(loss).__name__} does not take {unknown}")
    num_samples = _num_samples(num_samples, alg_name)
    if not (isinstance(grace_period, int) and grace_period >= 1):
        raise ValueError(f"grace_period: expected an integer >= 1 (evaluations), found {grace_period!r}")
    if not reduction_factor > 1:
        raise ValueError(f"reduction_factor: expected a number > 1, found {reduction_factor!r}")
    if max_concurrent_trials is not None and not (isinstance(max_concurrent_trials, int) and max_concurrent_trials >= 1):
        raise ValueError(f"max_concurrent_trials: expected an integer >= 1, found {max_concurrent_trials!r}")
    if scheduler is not None and isinstance(scheduler, str) and scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler: expected one of {list(SCHEDULERS)}, None or a ray.tune TrialScheduler, "
                         f"found {scheduler!r}")
    param_space = space.to_tune(alg_name)
    trial_scheduler = _scheduler(scheduler, grace_period, reduction_factor, max_t, base, space)
    if search_alg == "optuna":
        _require_optuna()

    model_name_or_path = _absolute_if_local(model_name_or_path)
    model_kwargs = dict(model_kwargs or {})
    import torch

    torch.manual_seed(base["seed"])  # as in every trial: a fresh head starts from the trials' initial weights
    probe = CrossEncoder(model_name_or_path, device="cpu", **model_kwargs)
    keys = _evaluation_keys(evaluator, eval_dataset, probe)
    metric, mode = resolve_metric(metric, mode, evaluator, eval_dataset, keys)
    baseline = None
    if evaluate_base_model and evaluator is not None:
        baseline = {k: float(v) for k, v in evaluator(probe).items() if isinstance(v, (int, float))}
    del probe

    experiment_path, storage, exp_name = _experiment_location(base, storage_path, name)
    if not ray.is_initialized():
        # a runtime_env here would clash with a Ray job's own (ray job submit --runtime-env);
        # the workers get the variable from their worker runtime env, a local cluster inherits it
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from raycross.ray_connect import init_ray

        init_ray()
    total_trials = num_samples * space.grid_size(alg_name)
    resources = plan_resources(base, ray.cluster_resources(), total_trials, cpus_per_trial, gpus_per_trial,
                               max_concurrent_trials)
    logger.info("sweep %s: %d trial(s), %s at a time, each %s; optimizing %s (%s)", experiment_path, total_trials,
                resources.max_concurrent_trials, resources.trial, metric, mode)

    setup = TrialSetup(
        model_name_or_path=model_name_or_path, train_dataset=_absolute_paths(train_dataset), base_training=base,
        metric=metric, mode=mode, eval_dataset=_absolute_paths(eval_dataset), evaluator=evaluator, loss=loss,
        loss_kwargs=loss_kwargs, model_kwargs=model_kwargs, experiment_path=experiment_path,
    )
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), resources.trial)

    # ---------------------------------------------------------------- run
    from ray.tune import Tuner

    if Tuner.can_restore(experiment_path):
        if not resume:
            raise ValueError(f"resume: an experiment already exists at {experiment_path}; pass resume=True to "
                             "continue it, or choose another name / output_dir")
        logger.info("resuming the sweep at %s", experiment_path)
        tuner = Tuner.restore(experiment_path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if resume:
            logger.info("resume=True but there is no experiment at %s yet: starting it", experiment_path)
        tune_config = tune.TuneConfig(
            metric=metric, mode=mode, num_samples=num_samples,
            scheduler=trial_scheduler,
            search_alg=_searcher(search_alg, metric, mode, seed, resources.max_concurrent_trials),
            # Tune ignores this for a variant generator (random/grid): the generator itself limits them
            max_concurrent_trials=resources.max_concurrent_trials if _is_searcher_only(search_alg) else None,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        )
        run_config = tune.RunConfig(
            name=exp_name, storage_path=storage, verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                    checkpoint_score_order=mode),
        )
        tuner = Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
    # Tune's console output (experiment box, status tables) goes to stderr: stdout stays for results
    with contextlib.redirect_stdout(sys.stderr):
        grid = tuner.fit()
    return summarize(grid, space.searched_keys, metric, mode, base["output_dir"], experiment_path, export_dir,
                     baseline)


# -------------------------------------------------------------------------------------- helpers
def _base_training(base_args: Any) -> dict[str, Any]:
    """The base arguments as a dict of CrossEncoderTrainingArguments fields (checked)."""
    from raycross.training.arguments import CrossEncoderTrainingArguments

    if base_args is None:
        raise ValueError("base_args: required: CrossEncoderTrainingArguments (or a dict) with output_dir and an "
                         "evaluation schedule, e.g. eval_strategy='steps', eval_steps=100")
    if isinstance(base_args, Mapping):
        try:
            base_args = CrossEncoderTrainingArguments(**base_args)
        except TypeError as exc:
            raise TypeError(f"base_args: {exc}") from None
    if not isinstance(base_args, CrossEncoderTrainingArguments):
        raise TypeError(f"base_args: expected CrossEncoderTrainingArguments or a dict, found {type(base_args).__name__}")
    base = base_args.to_dict()
    if base["eval_strategy"] == "no":
        raise ValueError("base_args.eval_strategy: a sweep compares trials on their evaluations; set "
                         "eval_strategy='steps' (with eval_steps) or 'epoch', found 'no'")
    if base.get("storage_path") and "://" not in str(base["storage_path"]):
        base["storage_path"] = str(Path(base["storage_path"]).expanduser().absolute())
    base["output_dir"] = str(Path(base["output_dir"]).expanduser().absolute())
    return base


def _is_searcher(value: Any) -> bool:
    from ray.tune.search import SearchAlgorithm, Searcher

    return isinstance(value, (Searcher, SearchAlgorithm))


def _num_samples(num_samples: int | None, alg: str) -> int:
    if num_samples is None:
        return 1 if alg == "grid" else DEFAULT_NUM_SAMPLES
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: expected an integer >= 1, found {num_samples!r}")
    return num_samples


def _absolute_if_local(path: str | os.PathLike) -> str:
    text = str(path)
    local = Path(text).expanduser()
    return str(local.absolute()) if local.exists() else text


def _absolute_paths(data: Any) -> Any:
    """File paths made absolute: trials run in their own working directories."""
    if isinstance(data, (str, os.PathLike)):
        return _absolute_if_local(data)
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
        return [_absolute_if_local(d) for d in data]
    if isinstance(data, dict) and data and all(isinstance(v, (str, os.PathLike)) for v in data.values()):
        return {k: _absolute_if_local(v) for k, v in data.items()}
    return data


def _evaluation_keys(evaluator: Any, eval_dataset: Any, model: Any) -> dict[str, Any]:
    """Every key the trainer's evaluations will report (the evaluator is run once when its keys can't be
    known otherwise)."""
    from raycross.training.validation import as_named, expected_metric_keys

    eval_named, single = as_named(eval_dataset, "eval")
    keys = expected_metric_keys(evaluator, list(eval_named), single, model.num_labels)
    if keys is None:
        logger.info("evaluating the base model once to learn the evaluator's metric names")
        result = evaluator(model)
        if not isinstance(result, Mapping):
            result = {"evaluator": result}
        keys = {"eval_loss"} if eval_named and single else {f"eval_{n}_loss" for n in eval_named}
        keys |= {f"eval_{k}" for k, v in result.items() if isinstance(v, (int, float))}
    return dict.fromkeys(sorted(keys))


def _experiment_location(base: dict[str, Any], storage_path: str | None, name: str | None) -> tuple[str, str, str]:
    """(experiment path, storage path, experiment name): ``storage_path/name``, by default next to (and
    named after) ``output_dir``, else the base arguments' ``storage_path``."""
    from raycross.training.location import RunLocation

    output_dir = Path(base["output_dir"]).expanduser().absolute()
    storage_path = storage_path or base.get("storage_path") or str(output_dir.parent)
    location = RunLocation.resolve(output_dir, storage_path, name)
    experiment_path, storage_path, name = location.run_dir, location.storage_path, location.name
    return experiment_path, str(storage_path), name


def plan_resources(
    base: Mapping[str, Any],
    cluster: Mapping[str, float],
    total_trials: int,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    max_concurrent_trials: int | None = None,
) -> TrialResources:
    """Resources of one trial and how many trials run at once so that none waits on another's resources.

    In-process trials (``num_workers=0``) hold ``cpus_per_trial`` CPUs (default 1) and a GPU when the
    cluster has one. A trial with workers holds almost nothing itself (it only drives its Ray Train
    run); its workers take ``num_workers x resources_per_worker``, and one CPU stays free for the Ray
    Data tasks that feed them.

    Example:
        >>> plan_resources({"num_workers": 0, "use_gpu": None}, {"CPU": 4}, total_trials=8).max_concurrent_trials
        4
        >>> plan = plan_resources({"num_workers": 2, "resources_per_worker": {"CPU": 0.5}, "use_gpu": False},
        ...                       {"CPU": 4}, total_trials=8)
        >>> plan.per_trial_cpu, plan.max_concurrent_trials
        (1.001, 3)
    """
    cpus = float(cluster.get("CPU", 0))
    gpus = float(cluster.get("GPU", 0))
    workers = int(base.get("num_workers") or 0)
    use_gpu = base.get("use_gpu")
    if workers == 0:
        cpu = 1.0 if cpus_per_trial is None else float(cpus_per_trial)
        if use_gpu is False:
            gpu = 0.0
        else:
            gpu = float(gpus_per_trial) if gpus_per_trial is not None else (1.0 if gpus >= 1 else 0.0)
        if use_gpu and gpu == 0:
            raise ValueError("use_gpu=True with in-process trials needs GPUs in the Ray cluster "
                             f"(gpus_per_trial={gpus_per_trial!r}, cluster GPUs: {gpus:g})")
        if cpu <= 0:
            raise ValueError(f"cpus_per_trial: expected > 0, found {cpus_per_trial!r}")
        trial = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
        per_cpu, per_gpu, reserve = cpu, gpu, 0.0
    else:
        per_worker = dict(base.get("resources_per_worker") or {})
        per_worker.setdefault("CPU", 1)
        worker_gpu = per_worker.get("GPU", 0) or (1 if use_gpu or (use_gpu is None and gpus >= workers) else 0)
        trial = {"CPU": DRIVER_CPU}  # the trial only drives the Ray Train run; its workers hold the resources
        per_cpu = workers * float(per_worker["CPU"])
        per_gpu = workers * float(worker_gpu)
        reserve = 1.0 if cpus - per_cpu >= 1.0 else 0.0  # room for the drivers' sliver and Ray Data tasks
    if per_cpu > cpus or per_gpu > gpus:
        raise ValueError(
            f"one trial needs {per_cpu:g} CPU and {per_gpu:g} GPU but the Ray cluster has {cpus:g} CPU and {gpus:g} "
            "GPU: lower num_workers / resources_per_worker / cpus_per_trial"
        )
    fits = math.floor((cpus - reserve) / per_cpu + 1e-9) if per_cpu else total_trials
    if per_gpu:
        fits = min(fits, math.floor(gpus / per_gpu + 1e-9))
    fits = max(1, min(fits, total_trials))
    if max_concurrent_trials is not None:
        if max_concurrent_trials > fits:
            logger.warning("max_concurrent_trials=%d: only %d trial(s) fit in the cluster at once; the others wait",
                           max_concurrent_trials, fits)
        fits = max_concurrent_trials
    return TrialResources(trial=trial, max_concurrent_trials=fits, per_trial_cpu=per_cpu + (DRIVER_CPU if workers else 0.0),
                          per_trial_gpu=per_gpu)


def estimate_evaluations(base: Mapping[str, Any], space: SearchSpace) -> int | None:
    """Evaluations one trial makes at most (None when it depends on what is only known at train time).

    Example:
        >>> from raycross.tuning.space import SearchSpace
        >>> space = SearchSpace.parse({"learning_rate": {"loguniform": [1e-5, 1e-4]}})
        >>> estimate_evaluations({"eval_strategy": "steps", "eval_steps": 0.25, "max_steps": -1}, space)
        5
        >>> estimate_evaluations({"eval_strategy": "steps", "eval_steps": 10, "max_steps": 45}, space)
        5
    """
    if any(p.key in ("eval_steps", "eval_strategy", "max_steps", "num_train_epochs") for p in space.params):
        return None
    strategy, every = base.get("eval_strategy"), base.get("eval_steps")
    if strategy == "epoch":
        if base.get("max_steps", -1) > 0:
            return None
        return math.ceil(float(base.get("num_train_epochs") or 1))
    if every is None or every <= 0:
        return None
    if every < 1:  # every ceil(total * fraction) steps, plus the final evaluation
        return math.ceil(1 / every) + 1
    if base.get("max_steps", -1) > 0:
        return math.ceil(base["max_steps"] / every)
    return None


def _scheduler(scheduler: Any, grace_period: int, reduction_factor: float, max_t: int | None,
               base: Mapping[str, Any], space: SearchSpace) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if isinstance(scheduler, TrialScheduler):
        return scheduler
    if scheduler is None or scheduler == "fifo":
        return FIFOScheduler()
    if max_t is None:
        estimate = estimate_evaluations(base, space)
        # no rung at the last evaluation: stopping a trial there saves nothing
        max_t = max(grace_period, estimate - 1) if estimate is not None else 1000
    if max_t < grace_period:
        raise ValueError(f"max_t: {max_t} evaluations per trial is less than grace_period={grace_period}")
    # time axis: the trial's evaluation count, comparable across trials of different batch sizes
    # stop_last_trials=False: reaching max_t ends nothing; a trial always finishes its own schedule
    return ASHAScheduler(time_attr="evaluation", max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, stop_last_trials=False)


def _require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ValueError("search_alg='optuna' needs Optuna: pip install 'raycross[optuna]'") from None


def _is_searcher_only(search_alg: Any) -> bool:
    """True for Optuna / a ``Searcher`` (Tune wraps it in a ConcurrencyLimiter), False for random/grid."""
    from ray.tune.search import Searcher

    return search_alg == "optuna" or isinstance(search_alg, Searcher)


def _searcher(search_alg: Any, metric: str, mode: str, seed: int | None, max_concurrent: int) -> Any:
    if not isinstance(search_alg, str):
        return search_alg
    if search_alg == "optuna":
        _require_optuna()
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=metric, mode=mode, seed=seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent)


def _trial_name(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


def summarize(grid: Any, param_keys: list[str], metric: str, mode: str, output_dir: str, experiment_path: str,
              export_dir: Any, baseline: dict[str, float] | None) -> SweepResult:
    """Rows, CSV, logged table and best-model export from a finished ``ResultGrid``."""
    records = _trial_records(grid)
    rows = order_rows([trial_row(r, param_keys, metric, mode, *records.get(str(r.path), (None, None)))
                       for r in grid], metric, mode)
    if baseline is not None:
        key = metric[len("eval_"):] if metric.startswith("eval_") else metric
        rows.insert(0, {"trial": "base model", "status": BASELINE, metric: baseline.get(key), "steps": 0})
    columns = ["trial", "status", *param_keys, metric, "best_step", "steps", "evaluations", "time_s", "error",
               "checkpoint", "trial_dir"]
    csv_path = write_csv(rows, columns, Path(output_dir) / "results.csv")
    result = SweepResult(rows=rows, columns=columns, csv_path=csv_path, metric=metric, mode=mode,
                         experiment_path=experiment_path, baseline=baseline)
    best = next((r for r in result.trial_rows if r.get(metric) is not None), None)
    if best is not None:
        result.best_trial = best["trial"]
        result.best_params = {k: best.get(k) for k in param_keys}
        result.best_metric = best[metric]
        result.best_step = best.get("best_step")
        result.best_checkpoint = best.get("checkpoint") or None
        if "://" in experiment_path:  # in-process trials upload their checkpoints to Tune's storage
            result.best_checkpoint = _uploaded_checkpoint(grid, best, metric, mode) or result.best_checkpoint
        if export_dir is not False and result.best_checkpoint:
            target = Path(export_dir) if export_dir else Path(output_dir) / "best_model"
            filesystem = getattr(grid, "filesystem", None) if "://" in experiment_path else None
            try:
                result.best_model_dir = export_model(result.best_checkpoint, target, filesystem)
            except (OSError, ValueError) as exc:  # the table and CSV stand; the export can be redone
                logger.warning("could not export the best model from %s: %s (raycross.tune.export_model(checkpoint, "
                               "directory) retries it)", result.best_checkpoint, exc)
    logger.info("sweep results (%s, %s):\n%s", metric, mode, result.table())
    failed = [r for r in result.trial_rows if r["status"] == "failed"]
    for row in failed:
        logger.warning("trial %s failed: %s", row["trial"], row["error"])
    if best is None:
        logger.warning("no trial reported %s; nothing to export", metric)
    else:
        logger.info("best trial %s: %s=%s at step %s with %s; model: %s", result.best_trial, metric,
                    result.best_metric, result.best_step, result.best_params, result.best_model_dir)
    return result


def _trial_records(grid: Any) -> dict[str, tuple[dict[str, Any], str]]:
    """{trial directory: (parameters, Tune status)} from the experiment's trial records."""
    analysis = getattr(grid, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None) or []
    return {str(t.path): (dict(t.config or {}), str(t.status)) for t in trials}


def _uploaded_checkpoint(grid: Any, row: Mapping[str, Any], metric: str, mode: str) -> str | None:
    """The best Tune-managed checkpoint of a trial (experiments at a URI upload their checkpoints)."""
    for result in grid:
        if str(result.path) == row.get("trial_dir") and result.best_checkpoints:
            checkpoint = result.get_best_checkpoint(metric, mode)
            return checkpoint.path if checkpoint is not None else None
    return None
