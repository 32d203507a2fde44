"""Evaluation during training: the loss on each eval dataset and the evaluator, as ``eval_*`` metrics.

Without ``shard_eval`` rank 0 evaluates alone (on the unwrapped model: a DDP forward on one rank would
wait for the others) and the metrics are shared with every worker; with ``shard_eval`` every worker
evaluates its part of the eval data and of the evaluator's pairs, and the results are combined.

Example:
    >>> metrics = evaluate_model(loop, epoch=1.0, step=500)  # doctest: +SKIP
    >>> sorted(metrics)  # doctest: +SKIP
    ['eval_loss', 'eval_wordnet_ndcg@10', ...]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
        with model.unwrapped(), torch.no_grad():
            yield
    finally:
        model.train(was_training)
        for loss in gathering:
            loss.gather_across_devices = True


def loss_sums(loss: Any, shard: Shard, batch_size: int, autocast: Any) -> tuple[float, float]:
    """(sum of per-row loss, number of rows) over a whole eval shard, in order.

    Example:
        >>> total, rows = loss_sums(loss, Shard(table, ["q", "d"], "label"), 32, nullcontext)  # doctest: +SKIP
    """
    total, rows = 0.0, 0
    for start in range(0, shard.num_rows, batch_size):
        indices = np.arange(start, min(start + batch_size, shard.num_rows))
        inputs, labels = shard.batch(indices)
        with autocast():
            out = loss(inputs, labels)
        value = torch.stack([v.float() for v in out.values()]).sum() if isinstance(out, dict) else out
        total += float(value) * len(indices)
        rows += len(indices)
    return total, float(rows)


def evaluate_model(loop: Any, epoch: float, step: int) -> dict[str, float]:
    """All evaluation metrics of a training loop at this point, identical on every worker."""
    job, rt, args = loop.job, loop.rt, loop.args
    metrics: dict[str, float] = {}
    losses = list({id(l): l for l in [*job.losses.values(), *job.eval_losses.values()]}.values())
    with inference_mode(loop.model, losses):
        if job.eval_specs:
            names = list(job.eval_specs)
            sums: list[float] = []
            for name in names:
                computes = args.shard_eval or loop.is_main
                total, rows = (loss_sums(job.eval_losses[name], loop.eval_shards[name],
                                         args.per_device_eval_batch_size, loop._autocast)
                               if computes else (0.0, 0.0))
                sums += [total, rows]
            # a sum over workers: shards add up; without sharding only rank 0 contributes
            sums = rt.all_reduce_sum(sums)
            for i, name in enumerate(names):
                key = "eval_loss" if job.single_eval else f"eval_{name}_loss"
                metrics[key] = sums[2 * i] / max(sums[2 * i + 1], 1.0)
        if job.evaluator is not None:
            metrics.update({f"eval_{k}": v for k, v in _run_evaluator(loop, epoch, step).items()})
    return metrics


def _run_evaluator(loop: Any, epoch: float, step: int) -> dict[str, float]:
    from raycross.evaluation.distributed import evaluate_sharded

    job, rt, args = loop.job, loop.rt, loop.args
    output_path = str(Path(args.output_dir) / "eval") if not rt.is_ray else None
    if args.shard_eval:
        result = evaluate_sharded(job.evaluator, loop.model, output_path, epoch=epoch, steps=step,
                                  rank=rt.rank, world_size=rt.world_size, all_gather=rt.all_gather)
    else:
        result = job.evaluator(loop.model, output_path=output_path, epoch=epoch, steps=step) if loop.is_main else None
        result = rt.broadcast(result)
    if not isinstance(result, dict):
        result = {"evaluator": float(result)}
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float, np.number))}
