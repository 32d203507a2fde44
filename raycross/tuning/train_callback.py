"""Trials with Ray Train workers: forward each evaluation report of the workers to the Tune trial.

Ray >= 2.50 runs Train inside Tune as a Tune function that launches the ``TorchTrainer`` with
``ray.tune.integration.ray_train.TuneReportCallback`` in its ``RunConfig(callbacks=...)``. The callback
runs in the Train controller after every ``ray.train.report`` of the workers. :class:`EvaluationToTune`
narrows it to the reports that carry the sweep metric (the trainer reports once per evaluation, with
the checkpoint saved at that step) and adds the evaluation count (the scheduler's time axis) and the
checkpoint path.

Example:
    >>> cb = EvaluationToTune("eval_dev_ndcg@10")  # doctest: +SKIP
    >>> result = train_with_run_callbacks(trainer, [cb])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback

logger = logging.getLogger(__name__)


class EvaluationToTune(TuneReportCallback):
    """A ``TuneReportCallback`` that forwards evaluation reports only, numbered 1, 2, ...

    Args:
        metric: the reported key the sweep optimizes; reports without it (none with the raycross trainer
            when saving follows evaluation) are not forwarded.
        start: evaluations already reported by an earlier attempt of this trial.
    """

    def __init__(self, metric: str, start: int = 0) -> None:
        super().__init__()
        self.metric = metric
        self.evaluations = start

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics or self.metric not in metrics[0]:
            return
        self.evaluations += 1
        report = {k: v for k, v in metrics[0].items() if isinstance(v, (int, float, str))}
        report["evaluation"] = self.evaluations
        if checkpoint is not None:
            report[CHECKPOINT_PATH_KEY] = checkpoint.path
        self._training_actor_item_queue.put(report)


def train_with_run_callbacks(trainer: Any, callbacks: list[Any]) -> Any:
    """``trainer.train()`` with extra Ray Train ``RunConfig`` callbacks.

    Uses the trainer's ``run_callbacks`` hook when it has one; otherwise adds the callbacks to every
    ``RunConfig`` created during the call (a trial process runs one trainer, which creates one).
    """
    hook = getattr(trainer, "run_callbacks", None)
    if isinstance(hook, list):
        hook.extend(callbacks)
        return trainer.train()
    with _run_config_callbacks(callbacks):
        return trainer.train()


@contextlib.contextmanager
def _run_config_callbacks(callbacks: list[Any]) -> Iterator[None]:
    # Patch the class's __post_init__, not the ray.train.RunConfig name: the class must stay importable
    # under its own name, or cloudpickle ships it by value (and fails) with the controller's arguments.
    from ray.train import RunConfig

    original = RunConfig.__post_init__

    def post_init(self: Any) -> None:
        original(self)
        present = list(self.callbacks or [])
        self.callbacks = present + [cb for cb in callbacks if all(cb is not p for p in present)]

    RunConfig.__post_init__ = post_init
    try:
        yield
    finally:
        RunConfig.__post_init__ = original
