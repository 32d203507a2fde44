"""The end of a run, on the driver, the same for in-process and Ray runs: put the final (or best) weights
into the model object, collect the final metrics, and export the model with its trainer state, results,
training arguments and model card into ``output_dir``.

Example:
    >>> outcome = RunOutcome(state=state_dict, metrics={"train_loss": 0.3}, last_checkpoint="out/checkpoint-9")  # doctest: +SKIP
    >>> result = finish_run(trainer, outcome)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raycross.training.checkpoints import TRAINER_STATE, TRAINING_ARGS, load_model_weights, read_json
from raycross.training.export import export_directory
from raycross.training.location import open_checkpoint
from raycross.training.progress import Progress

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :meth:`CrossEncoderTrainer.train` returns.

    Attributes:
        global_step: optimizer steps taken in total.
        training_loss: mean training loss of this run.
        metrics: final metrics (``train_*`` summary and the last ``eval_*`` metrics).
        best_checkpoint: checkpoint with the best ``metric_for_best_model`` (None without one).
        best_metric: its value.
        last_checkpoint: the last checkpoint written.
        log_history: every log entry (training logs and evaluations), as in ``trainer_state.json``.
        output_dir: where the final model was written.
    """

    global_step: int
    training_loss: float
    metrics: dict[str, float]
    best_checkpoint: str | None
    best_metric: float | None
    last_checkpoint: str | None
    log_history: list[dict[str, Any]] = field(repr=False)
    output_dir: str = ""


@dataclass
class RunOutcome:
    """What a run left for the driver: the trainer state (transformers ``TrainerState`` as a dict), the
    final metrics and the last checkpoint (a local path, a URI, or a path on the run's filesystem)."""

    state: dict[str, Any]
    metrics: dict[str, float]
    last_checkpoint: str | None


def outcome_from_checkpoint(directory: Path, reported: dict[str, Any] | None, path: str) -> RunOutcome:
    """The outcome of a Ray run from its last checkpoint (downloaded to `directory`) and the last metrics
    reported (``Result.metrics``): the summary line may have come after the last checkpoint."""
    state = read_json(directory / TRAINER_STATE)
    progress = Progress.read(directory)
    reported = reported or {}
    summary = next((e for e in reversed(state["log_history"]) if "train_runtime" in e), None)
    if summary is None and "train_runtime" in reported:
        summary = {k: v for k, v in reported.items() if k.startswith("train_") or k in ("step", "epoch")}
        state["log_history"].append(summary)
    metrics = {k: v for k, v in (summary or {}).items() if k not in ("step", "epoch")}
    metrics.update(progress.eval_metrics)
    return RunOutcome(state=state, metrics=metrics, last_checkpoint=path)


def finish_run(trainer: Any, outcome: RunOutcome, last_dir: Path | None = None, filesystem: Any = None) -> TrainResult:
    """Restore the weights the run ends with and export; returns the :class:`TrainResult`.

    Args:
        trainer: the CrossEncoderTrainer (its model, arguments, datasets and losses go into the export).
        outcome: the run's outcome.
        last_dir: a local copy of the last checkpoint whose weights to load; None when the model object
            already holds the final weights (in-process runs train it in place).
        filesystem: the pyarrow filesystem of the checkpoint paths (Ray runs), None for local paths.
    """
    args, model = trainer.args, trainer.model
    best = outcome.state.get("best_model_checkpoint")
    if args.load_best_model_at_end and best:
        logger.info("Loading the best model from %s (%s=%s)", best, trainer.metric_key, outcome.state.get("best_metric"))
        with open_checkpoint(best, filesystem) as directory:
            load_model_weights(model.hf_model, directory)
    elif last_dir is not None:
        load_model_weights(model.hf_model, last_dir)
    return export_final(trainer, outcome)


def export_final(trainer: Any, outcome: RunOutcome) -> TrainResult:
    """Write the final model, ``trainer_state.json`` (transformers TrainerState), ``train_results.json``,
    ``training_args.json`` and the model card into output_dir (as a whole, see :func:`export_directory`)."""
    from raycross.training.checkpoints import write_json
    from raycross.training.model_card import generate_model_card

    args, model, metrics, state = trainer.args, trainer.model, outcome.metrics, outcome.state
    out = Path(args.output_dir)
    log_history, global_step = state["log_history"], int(state["global_step"])
    best, best_metric = state.get("best_model_checkpoint"), state.get("best_metric")

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, merge_adapter=args.merge_adapter)
        write_json(tmp / TRAINER_STATE, state)
        write_json(tmp / "train_results.json", {**metrics, "global_step": global_step,
                                                 "best_model_checkpoint": best,
                                                 "last_checkpoint": outcome.last_checkpoint})
        write_json(tmp / TRAINING_ARGS, args.to_dict())
        card = generate_model_card(model, args, trainer.train_specs, trainer.eval_specs, trainer.losses,
                                   log_history, metrics, trainer.eval_losses, primary_metrics(trainer.evaluator))
        (tmp / "README.md").write_text(card, encoding="utf8")

    export_directory(out, write)
    logger.info("Saved the final model to %s", out)
    return TrainResult(
        global_step=global_step, training_loss=float(metrics.get("train_loss", float("nan"))),
        metrics=metrics, best_checkpoint=best, best_metric=best_metric, last_checkpoint=outcome.last_checkpoint,
        log_history=log_history, output_dir=str(out),
    )


def primary_metrics(evaluator: Any) -> list[str]:
    """The ``eval_<primary metric>`` keys of an evaluator (or of each evaluator of a sequential one)."""
    if evaluator is None:
        return []
    subs = getattr(evaluator, "evaluators", [evaluator])
    names = [getattr(e, "primary_metric", None) for e in subs]
    return [f"eval_{n}" for n in names if n]
