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

import logging
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
    """``trainer.train()`` with extra Ray Train ``RunConfig`` callbacks (the trainer's ``run_callbacks``)."""
    trainer.run_callbacks.extend(callbacks)
    try:
        return trainer.train()
    finally:
        for callback in callbacks:
            trainer.run_callbacks.remove(callback)
