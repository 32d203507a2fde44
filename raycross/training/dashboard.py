"""Training metrics on the Ray dashboard: a callback publishing every logged number as a Ray metric.

Example:
    >>> callback = RayDashboardMetrics("my-run")
    >>> callback.run_name
    'my-run'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RayDashboardMetrics:
    """Training callback: every number the trainer logs becomes the Ray metric ``raycross_train_metric``.

    Tagged ``run`` (the run name) and ``metric`` (``loss``, ``learning_rate``, ``eval_<name>_ndcg@10``, ...),
    it reaches the Ray dashboard's Metrics view (Prometheus as ``ray_raycross_train_metric``) from rank 0
    of the workers, or from the driver for in-process training in a Ray job. Without Ray it does nothing.

    Example:
        >>> trainer = CrossEncoderTrainer(model, args, train_dataset=data, callbacks=[RayDashboardMetrics("run")])  # doctest: +SKIP
    """

    def __init__(self, run_name: str) -> None:
        self.run_name = str(run_name)
        self._gauge = None

    def __getstate__(self) -> dict[str, Any]:
        return {"run_name": self.run_name, "_gauge": None}  # the gauge is made where the callback runs

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not getattr(state, "is_world_process_zero", True) or not logs:
            return
        gauge = self._get_gauge()
        if gauge is None:
            return
        import math
        import numbers

        values = {**logs, "global_step": getattr(state, "global_step", None)}
        for key, value in values.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
                gauge.set(float(value), tags={"run": self.run_name, "metric": str(key)})

    def _get_gauge(self):
        if self._gauge is None:
            import ray

            if not ray.is_initialized():
                return None
            from ray.util.metrics import Gauge

            self._gauge = Gauge("raycross_train_metric", description="raycross training logs (loss, lr, eval metrics)",
                                tag_keys=("run", "metric"))
        return self._gauge
