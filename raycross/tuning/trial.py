"""One Tune trial: build the model, loss and trainer from the trial's parameters, train, report every
evaluation to Ray Tune (so ASHA can stop the trial after it).

- ``num_workers=0`` (in-process trial): the trial process trains; :class:`TuneReporter`, a transformers
  callback, calls ``ray.tune.report`` once per evaluation, right after the checkpoint of that step is
  written (the trial saves at every evaluation).
- ``num_workers>=1``: the trial function drives a Ray Train run (``TorchTrainer``) and
  :class:`~raycross.tuning.train_callback.EvaluationToTune`, a ``ray.tune.integration.ray_train.TuneReportCallback``,
  forwards the workers' evaluation reports to Tune (the Ray 2.50+ Train-in-Tune pattern).

Either way a report holds the ``eval_*`` metrics, ``step``, ``epoch``, ``evaluation`` (1, 2, ... : the
scheduler's time axis) and ``checkpoint_path`` (the trainer checkpoint of that evaluation). A trial that
returns normally writes ``raycross_trial.json`` (``completed: true``) in its directory, which tells a
completed trial from one the scheduler stopped.

Example (what :func:`raycross.tune.tune_cross_encoder` builds)::

    trainable = tune.with_parameters(run_trial, setup=TrialSetup(...))
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TRIAL_FILE = "raycross_trial.json"
TRAIN_SUBDIR = "train"


@dataclass
class TrialSetup:
    """Everything a trial needs besides its sampled parameters; shipped once through the object store.

    Attributes:
        model_name_or_path: the model every trial starts from.
        model_kwargs: fixed CrossEncoder arguments (a trial's ``model.*`` parameters override them).
        train_dataset, eval_dataset, evaluator: as for the trainer.
        loss: the fixed loss (name or class) when ``loss`` is not searched.
        loss_kwargs: fixed loss arguments (a trial's ``loss.*`` parameters override them).
        base_training: base ``CrossEncoderTrainingArguments`` as a dict.
        metric, mode: the reported key the sweep optimizes and its direction.
        experiment_path: the experiment directory (a local path or a URI); trial ``<id>`` lives in
            ``<experiment_path>/trial_<id>``.
    """

    model_name_or_path: str
    train_dataset: Any
    base_training: dict[str, Any]
    metric: str
    mode: str
    eval_dataset: Any = None
    evaluator: Any = None
    loss: Any = "BinaryCrossEntropyLoss"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    experiment_path: str = ""

    def split(self, config: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any], dict[str, Any]]:
        """A trial config -> (training overrides, loss, loss kwargs, model kwargs)."""
        training, loss_kwargs, model_kwargs = {}, dict(self.loss_kwargs), dict(self.model_kwargs)
        loss = self.loss
        for key, value in config.items():
            if key == "loss":
                loss = value
            elif key.startswith("loss."):
                loss_kwargs[key[len("loss."):]] = value
            elif key.startswith("model."):
                model_kwargs[key[len("model."):]] = value
            else:
                training[key] = value
        return training, loss, loss_kwargs, model_kwargs

    def training_args(self, overrides: dict[str, Any], output_dir: str, storage_path: str | None = None) -> Any:
        """The trial's CrossEncoderTrainingArguments: base + overrides, checkpoints at every evaluation,
        rotation keeping the best (by the sweep metric) and the latest. Checkpoints go to `output_dir`
        (``storage_path/train`` when given: a Ray Train run writing to a URI)."""
        from raycross.training.arguments import CrossEncoderTrainingArguments

        values = {**self.base_training, **overrides}
        values.update(
            output_dir=output_dir, run_name=TRAIN_SUBDIR, storage_path=storage_path, logging_dir=None,
            metric_for_best_model=self.metric, greater_is_better=self.mode == "max",
            save_strategy=values["eval_strategy"], save_steps=values.get("eval_steps") or values["save_steps"],
            save_total_limit=values.get("save_total_limit") or 1, disable_tqdm=True,
        )
        return CrossEncoderTrainingArguments(**values)


def build_loss(loss: Any, model: Any, kwargs: dict[str, Any]) -> Any:
    """Instantiate a loss (name or class) for `model` through the config's resolver; arguments it does not
    take are left out (a sweep over several losses may carry arguments of one of them).

    Example:
        >>> build_loss("BinaryCrossEntropyLoss", model, {"pos_weight": 2.0, "margin": 1.0})  # doctest: +SKIP
    """
    from raycross.config import LOSS_OBJECT_ARGS
    from raycross.config.components import Component, resolve
    from raycross.config.spec import parse_loss_component
    from raycross.tuning.space import loss_accepts, resolve_loss

    cls = resolve_loss(loss)
    used = {}
    for name, value in kwargs.items():
        if loss_accepts(cls, name):
            used[name] = value
        else:
            logger.info("%s does not take %r: left out for this trial", cls.__name__, name)
    if isinstance(loss, str):  # the config path: the same checks and nested objects as a `loss:` section
        return parse_loss_component({"name": loss, "kwargs": used}, "loss").build(model)
    objects = {k: resolve("object", v, f"loss.{k}") for k, v in used.items()
               if k in LOSS_OBJECT_ARGS and isinstance(v, (str, dict))}
    return Component(cls, {**used, **objects}, "loss").build(model)


class TuneReporter:
    """transformers-style callback for in-process trials: one ``ray.tune.report`` per evaluation.

    The report waits for the checkpoint of the evaluated step (the trial saves at every evaluation) so
    that a trial the scheduler stops right after the report still leaves that checkpoint behind. An
    evaluation without a checkpoint at the same step is reported at the next step or at the end.
    """

    def __init__(self, metric: str, upload: bool = False) -> None:
        self.metric = metric
        self.upload = upload
        self.evaluations = 0
        self.pending: dict[str, Any] | None = None
        self.pending_step = -1

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # a resumed run continues the count (the restored log history holds the earlier evaluations)
        self.evaluations = sum(1 for entry in state.log_history if self.metric in entry)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        if metrics and self.metric in metrics:
            self.pending = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            self.pending_step = state.global_step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pending is not None and self.pending_step == state.global_step:
            from raycross.training.location import RunLocation

            self._report(state, Path(RunLocation.from_args(args).checkpoint_path(state.global_step)))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pending is not None:
            self._report(state, None)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pending is not None:
            self._report(state, None)

    def _report(self, state: Any, checkpoint_dir: Path | None) -> None:
        import ray.tune

        self.evaluations += 1
        metrics = {**self.pending, "step": self.pending_step, "epoch": float(state.epoch or 0.0),
                   "evaluation": self.evaluations, "total_steps": int(state.max_steps)}
        self.pending = None
        checkpoint = None
        if checkpoint_dir is not None and checkpoint_dir.is_dir():
            metrics["checkpoint_path"] = str(checkpoint_dir)
            if self.upload:
                checkpoint = ray.tune.Checkpoint.from_directory(str(checkpoint_dir))
        ray.tune.report(metrics, checkpoint=checkpoint)


def trial_dirname(trial_id: str) -> str:
    """The directory name of a trial inside the experiment directory."""
    return f"trial_{trial_id}"


def trial_output_dir(trial_dir: str) -> tuple[str, bool]:
    """Where the trial's trainer writes (and whether checkpoints must be uploaded to Tune's storage):
    ``<trial dir>/train`` for a local experiment, the trial's working directory for a URI one."""
    if "://" in trial_dir:
        return str(Path.cwd() / TRAIN_SUBDIR), True
    return str(Path(trial_dir) / TRAIN_SUBDIR), False


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune function trainable: one training run with the parameters in `config`."""
    import ray.tune
    import torch

    from raycross.model import CrossEncoder
    from raycross.training import CrossEncoderTrainer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # the trial's directory in the experiment's storage (get_trial_dir() is a session-local staging
    # directory, gone after a restart: checkpoints there could not be resumed nor exported)
    trial_dir = f"{setup.experiment_path.rstrip('/')}/{trial_dirname(ray.tune.get_context().get_trial_id())}"
    output_dir, upload = trial_output_dir(trial_dir)
    training, loss_name, loss_kwargs, model_kwargs = setup.split(config)
    workers = int({**setup.base_training, **training}.get("num_workers") or 0)
    args = setup.training_args(training, output_dir, storage_path=trial_dir if upload and workers else None)
    torch.manual_seed(args.seed)  # a fresh classification head is initialized the same way in every trial
    model = CrossEncoder(setup.model_name_or_path, **model_kwargs)
    loss = build_loss(loss_name, model, loss_kwargs)
    callbacks = [TuneReporter(setup.metric, upload=upload)] if args.num_workers == 0 else []
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=setup.train_dataset,
                                  eval_dataset=setup.eval_dataset, loss=loss, evaluator=setup.evaluator,
                                  callbacks=callbacks)
    if args.num_workers == 0:
        resume_from = None
        if upload and ray.tune.get_checkpoint() is not None:
            # an experiment at a URI: the trainer's own files were node-local; continue from the uploaded copy
            resume_from = ray.tune.get_checkpoint().to_directory(str(Path(output_dir).parent / "resume-checkpoint"))
        result = trainer.train(resume_from_checkpoint=resume_from)
    else:
        from raycross.tuning.train_callback import EvaluationToTune, train_with_run_callbacks

        from raycross.tuning.results import trainer_history

        # a resumed Ray Train run continues from its last checkpoint: continue the evaluation count too
        done = len(trainer_history(trial_dir, setup.metric))
        result = train_with_run_callbacks(trainer, [EvaluationToTune(setup.metric, start=done)])
    write_trial_file(trial_dir, {
        "completed": True, "global_step": result.global_step, "best_checkpoint": result.best_checkpoint,
        "best_metric": result.best_metric, "final_model": result.output_dir,
        "final_metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
    })


def write_trial_file(trial_dir: str, data: dict[str, Any]) -> None:
    """Write ``raycross_trial.json`` into the trial directory (a local path or a URI)."""
    text = json.dumps(data, indent=2, default=str)
    if "://" not in trial_dir:
        Path(trial_dir).mkdir(parents=True, exist_ok=True)
        (Path(trial_dir) / TRIAL_FILE).write_text(text, encoding="utf8")
        return
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(trial_dir)
    with filesystem.open_output_stream(f"{path}/{TRIAL_FILE}") as stream:
        stream.write(text.encode("utf8"))


def read_trial_file(trial_dir: str) -> dict[str, Any]:
    """The trial's ``raycross_trial.json`` ({} when the trial did not complete)."""
    try:
        if "://" not in trial_dir:
            path = Path(trial_dir) / TRIAL_FILE
            return json.loads(path.read_text(encoding="utf8")) if path.is_file() else {}
        import pyarrow.fs

        filesystem, path = pyarrow.fs.FileSystem.from_uri(trial_dir)
        with filesystem.open_input_stream(f"{path}/{TRIAL_FILE}") as stream:
            return json.loads(stream.read().decode("utf8"))
    except (OSError, ValueError):
        return {}
