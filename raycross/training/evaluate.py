"""Evaluation during training: the loss on each eval dataset and the evaluator, as ``eval_*`` metrics.

Without ``shard_eval`` rank 0 evaluates alone (on the unwrapped model: a DDP forward on one rank would
wait for the others) and the metrics are shared with every worker; with ``shard_eval`` every worker
evaluates its part of the eval data and of the evaluator's pairs, and the results are combined.

Example:
    >>> metrics = evaluate_model(model, {"eval": shard}, {"eval": loss}, 32, evaluator)  # doctest: +SKIP
    >>> sorted(metrics)  # doctest: +SKIP
    ['eval_loss', 'eval_wordnet_ndcg@10', ...]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

from raycross.losses._plan import call_loss
from raycross.prompts import dataset_prompt

from raycross.training.tables import Shard


@contextmanager
def inference_mode(model: Any, losses: list[Any]) -> Iterator[None]:
    """Eval mode without the parallel wrapper (``model.unwrapped()``: a DDP forward on one rank would wait
    for the others), no gradients, and cross-worker gathering in losses turned off.

    Example:
        >>> with inference_mode(model, [loss]):  # doctest: +SKIP
        ...     value = loss(inputs, labels)
    """
    gathering = [loss for loss in losses if getattr(loss, "gather_across_devices", False)]
    was_training = model.training
    for loss in gathering:
        loss.gather_across_devices = False
    model.eval()
    try:
        unwrapped = getattr(model, "unwrapped", None)  # a CrossEncoder's; other models have no wrapper
        with unwrapped() if callable(unwrapped) else nullcontext(), torch.no_grad():
            yield
    finally:
        model.train(was_training)
        for loss in gathering:
            loss.gather_across_devices = True


def loss_sums(loss: Any, shard: Shard, batch_size: int, autocast: Any, prompt: str | None = None) -> tuple[float, float]:
    """(sum of per-row loss, number of rows) over a whole eval shard, in order.

    Example:
        >>> total, rows = loss_sums(loss, Shard(table, ["q", "d"], "label"), 32, nullcontext)  # doctest: +SKIP
    """
    total, rows = 0.0, 0
    for start in range(0, shard.num_rows, batch_size):
        indices = np.arange(start, min(start + batch_size, shard.num_rows))
        inputs, labels = shard.batch(indices)
        with autocast():
            out = call_loss(loss, inputs, labels, prompt)
        value = torch.stack([v.float() for v in out.values()]).sum() if isinstance(out, dict) else out
        total += float(value) * len(indices)
        rows += len(indices)
    return total, float(rows)


def evaluate_model(
    model: Any,
    shards: dict[str, Shard],
    losses: dict[str, Any],
    batch_size: int,
    evaluator: Any = None,
    *,
    single_eval: bool = True,
    autocast: Callable[[], Any] = nullcontext,
    quiet_losses: list[Any] | None = None,
    workers: Any = None,
    shard_eval: bool = False,
    output_path: str | None = None,
    epoch: float | None = None,
    step: int | None = None,
    compute_metrics: Callable[[Any], dict[str, float]] | None = None,
    prompts: str | dict[str, str] | None = None,
) -> dict[str, float]:
    """All evaluation metrics of `model`: the loss on every eval dataset and the evaluator's metrics
    (plus ``compute_metrics`` on the eval datasets' logits, see :mod:`raycross.training.prediction_metrics`).

    Used by the training loop (on every worker: the result is identical everywhere) and by
    ``CrossEncoderTrainer.evaluate`` (in this process).

    Args:
        model: the CrossEncoder (possibly DDP-wrapped; evaluation runs on the bare model).
        shards: eval dataset name -> its rows here (a missing name: this worker computes no loss for it).
        losses: eval dataset name -> its loss; the keys give the metric names and their order.
        batch_size: rows per forward pass.
        evaluator: a raycross evaluator, or None.
        single_eval: one eval dataset reported as ``eval_loss`` (else ``eval_<name>_loss``).
        autocast: a factory of the mixed-precision context of the run (see :func:`autocast_for`).
        quiet_losses: losses whose cross-worker gathering is switched off meanwhile (default: `losses`).
        workers: collectives (``rank``, ``world_size``, ``all_reduce_sum``, ``broadcast``, ``all_gather``);
            default: this process alone.
        shard_eval: every worker evaluates its part (else rank 0 alone, result shared).
        output_path, epoch, step: passed to the evaluator (CSV output, epoch/step columns).
        prompts: the training argument ``prompts`` (one prompt, or dataset name -> prompt) for the eval losses.

    Example:
        >>> evaluate_model(model, {"eval": shard}, {"eval": loss}, 32)  # doctest: +SKIP
        {'eval_loss': 0.41}
    """
    from raycross.training.runtime import SingleProcess

    workers = workers if workers is not None else SingleProcess()
    metrics: dict[str, float] = {}
    quiet = quiet_losses if quiet_losses is not None else list(losses.values())
    with inference_mode(model, list({id(l): l for l in quiet}.values())):
        if losses:
            names = list(losses)
            sums: list[float] = []
            for name in names:
                shard = shards.get(name)
                prompt = dataset_prompt(prompts, name)
                total, rows = (loss_sums(losses[name], shard, batch_size, autocast, prompt) if shard is not None
                               else (0.0, 0.0))
                sums += [total, rows]
            # a sum over workers: shards add up; without sharding only rank 0 contributes
            sums = workers.all_reduce_sum(sums)
            for i, name in enumerate(names):
                key = "eval_loss" if single_eval else f"eval_{name}_loss"
                metrics[key] = sums[2 * i] / max(sums[2 * i + 1], 1.0)
        if compute_metrics is not None and losses:
            from raycross.training.prediction_metrics import prediction_metrics

            metrics.update(prediction_metrics(compute_metrics, model, shards, list(losses), batch_size, single_eval,
                                              workers, shard_eval))
        if evaluator is not None:
            result = _run_evaluator(evaluator, model, workers, shard_eval, output_path, epoch, step)
            metrics.update({f"eval_{k}": v for k, v in result.items()})
    return metrics


def _run_evaluator(evaluator: Any, model: Any, workers: Any, shard_eval: bool, output_path: str | None,
                   epoch: float | None, step: int | None) -> dict[str, float]:
    from raycross.evaluation.distributed import evaluate_sharded

    kwargs = {} if epoch is None else {"epoch": epoch, "steps": step}
    if shard_eval:
        result = evaluate_sharded(evaluator, model, output_path, rank=workers.rank, world_size=workers.world_size,
                                  all_gather=workers.all_gather, **kwargs)
    else:
        result = evaluator(model, output_path=output_path, **kwargs) if workers.rank == 0 else None
        result = workers.broadcast(result)
    if not isinstance(result, dict):
        result = {getattr(evaluator, "primary_metric", None) or "evaluator": float(result)}
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float, np.number))}


def autocast_for(bf16: bool, fp16: bool, device_type: str) -> Callable[[], Any]:
    """A factory of the run's mixed-precision context (bf16 / fp16 autocast, else none).

    Example:
        >>> with autocast_for(False, False, "cpu")():
        ...     pass
    """
    if bf16:
        return lambda: torch.autocast(device_type, dtype=torch.bfloat16)
    if fp16:
        return lambda: torch.autocast(device_type, dtype=torch.float16)
    return nullcontext
