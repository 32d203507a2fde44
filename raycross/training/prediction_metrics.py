"""``compute_metrics`` (transformers' hook) on the eval datasets: the model's raw logits on each eval
dataset of (text, text) pairs and its labels go to ``compute_metrics(EvalPrediction(predictions,
label_ids))``; the returned metrics are reported as ``eval_<metric>`` (``eval_<dataset>_<metric>`` for a dict
of eval datasets). Datasets with list columns (listwise losses) have no per-pair prediction and are skipped.

Example:
    >>> def accuracy(prediction):
    ...     return {"accuracy": float(((prediction.predictions > 0) == prediction.label_ids).mean())}
    >>> trainer = CrossEncoderTrainer(model, args, train_dataset=train, eval_dataset=dev,
    ...                               compute_metrics=accuracy)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn


def _pair_logits(model: Any, shard: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    if shard is None or len(shard.input_columns) != 2 or shard.label_column is None:
        return None
    inputs, _ = shard.batch(np.arange(shard.num_rows))
    if inputs and inputs[0] and not all(isinstance(t, str) for col in inputs for t in col[:1]):
        return None
    logits = model.predict(list(zip(*inputs)), batch_size=batch_size, activation_fn=nn.Identity(),
                           show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(logits), np.asarray(shard.label_array())


def prediction_metrics(
    compute_metrics: Callable[[Any], dict[str, float]],
    model: Any,
    shards: dict[str, Any],
    names: list[str],
    batch_size: int,
    single_eval: bool,
    workers: Any,
    shard_eval: bool,
) -> dict[str, float]:
    """``eval_*`` metrics from `compute_metrics` for each eval dataset (identical on every worker)."""
    from transformers import EvalPrediction

    metrics: dict[str, float] = {}
    for name in names:
        local = _pair_logits(model, shards.get(name), batch_size)
        if shard_eval:
            parts = [p for p in workers.all_gather(local) if p is not None]
            local = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])) if parts else None
        if local is None or (not shard_eval and workers.rank != 0):
            result = None
        else:
            result = dict(compute_metrics(EvalPrediction(predictions=local[0], label_ids=local[1])))
        if not shard_eval:
            result = workers.broadcast(result)
        prefix = "eval_" if single_eval else f"eval_{name}_"
        metrics.update({k if k.startswith(prefix) else prefix + k: float(v) for k, v in (result or {}).items()})
    return metrics
