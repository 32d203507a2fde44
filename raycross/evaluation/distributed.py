"""Scoring evaluation pairs beyond one process: a Ray Data actor pool, or shards on training workers.

Two ways, both built on the evaluator contract ``pairs()`` -> scores -> ``compute_metrics(scores)``:

- :func:`score_pairs_with_ray` / :class:`RayPairScorer`: the pairs become a Ray Dataset with an index
  column; a pool of actors (fractional CPUs, or GPUs) each loads the model once and scores batches with
  ``CrossEncoder.predict``; the scores are put back in input order by that index. Pass
  ``scorer="ray"`` or ``scorer=RayPairScorer(...)`` to any evaluator.
- :func:`evaluate_sharded`: inside a data-parallel training run (``torch.distributed`` initialized, e.g.
  on Ray Train workers), every rank scores a contiguous shard of ``pairs()``, the shards are gathered,
  and the metrics are computed once from the full score array (identical on every rank; the CSV file
  and model card are written by rank 0 only).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raycross.evaluation.base import Pair, predict_scorer

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Ray Data actor pool
# ----------------------------------------------------------------------------------------------


def _model_payload(model: Any) -> dict[str, Any]:
    """What an actor needs to rebuild `model`: a path / hub id, or the saved files as bytes.

    An in-memory model travels as its `save_pretrained` files through the object store, so the actors
    score with exactly these weights (a freshly initialized head included) on any node.
    """
    if isinstance(model, (str, os.PathLike)):
        return {"path": str(model)}
    if not hasattr(model, "save_pretrained"):
        raise TypeError(
            f"`model` must be a CrossEncoder or a model path / hub id, got {type(model).__name__}"
        )
    with tempfile.TemporaryDirectory(prefix="raycross-eval-model-") as tmp:
        model.save_pretrained(tmp)
        files = {
            str(path.relative_to(tmp)): path.read_bytes() for path in Path(tmp).rglob("*") if path.is_file()
        }
    return {"files": files, "max_length": getattr(model, "max_length", None)}


class _PairScoringActor:
    """Ray Data callable class: loads the CrossEncoder once, then scores batches of pairs."""

    def __init__(self, payload: Any, predict_batch_size: int, num_threads: int, model_kwargs: dict[str, Any],
                 prompt: str | None = None):
        import ray
        import torch

        from raycross.model import CrossEncoder

        if isinstance(payload, ray.ObjectRef):
            payload = ray.get(payload)
        torch.set_num_threads(max(1, num_threads))
        self.predict_batch_size = predict_batch_size
        self.predict_kwargs = {} if prompt is None else {"prompt": prompt}
        if "path" in payload:
            self.model = CrossEncoder(payload["path"], **model_kwargs)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="raycross-eval-actor-")
            for name, data in payload["files"].items():
                target = Path(self._tmp.name) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            kwargs = dict(model_kwargs)
            if payload.get("max_length") is not None:
                kwargs.setdefault("max_length", payload["max_length"])
            self.model = CrossEncoder(self._tmp.name, **kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(zip(batch["text_a"].tolist(), batch["text_b"].tolist()))
        scores = self.model.predict(
            pairs, batch_size=self.predict_batch_size, show_progress_bar=False, convert_to_numpy=True,
            **self.predict_kwargs,
        )
        return {"index": batch["index"], "score": np.asarray(scores, dtype=np.float32)}


def score_pairs_with_ray(
    model: Any,
    pairs: Sequence[Pair],
    batch_size: int = 32,
    num_actors: int = 2,
    num_cpus_per_actor: float = 0.5,
    num_gpus_per_actor: float = 0.0,
    rows_per_task: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    prompt: str | None = None,
) -> np.ndarray:
    """Score `pairs` with a CrossEncoder on a Ray Data actor pool; scores come back in input order.

    Args:
        model: a CrossEncoder (its saved files go through the object store) or a path / hub id that
            every actor can load.
        pairs: (text_a, text_b) pairs.
        batch_size: ``predict`` batch size inside each actor.
        num_actors: size of the actor pool.
        num_cpus_per_actor / num_gpus_per_actor: resources of each actor (fractions allowed).
        rows_per_task: rows per Ray Data batch handed to an actor (default: spread over the actors, at
            least `batch_size`, at most 4096).
        model_kwargs: extra ``CrossEncoder`` arguments for the actors (e.g. ``{"device": "cpu"}``).
        prompt: passed to ``predict`` (None: the model's default prompt).

    Returns:
        np.ndarray of shape (n,) for a 1-label model or (n, num_labels).

    Example:
        >>> import ray; ray.init(num_cpus=2)  # doctest: +SKIP
        >>> scores = score_pairs_with_ray(model, [("q", "d1"), ("q", "d2")], num_actors=2)  # doctest: +SKIP
    """
    import pyarrow as pa
    import ray
    import ray.data

    if isinstance(num_actors, bool) or not isinstance(num_actors, int) or num_actors < 1:
        raise ValueError(f"`num_actors` must be an integer >= 1, got {num_actors!r}")
    if num_cpus_per_actor < 0 or num_gpus_per_actor < 0:
        raise ValueError("`num_cpus_per_actor` and `num_gpus_per_actor` must be >= 0")
    pairs = list(pairs)
    if not pairs:
        return np.zeros(0, dtype=np.float32)
    if not ray.is_initialized():
        from raycross.ray_connect import init_ray

        init_ray()
    if rows_per_task is None:
        rows_per_task = int(min(4096, max(batch_size, -(-len(pairs) // (2 * num_actors)))))
    model_kwargs = dict(model_kwargs or {})
    if num_gpus_per_actor == 0:
        model_kwargs.setdefault("device", "cpu")
    payload = ray.put(_model_payload(model))
    table = pa.table({
        "index": np.arange(len(pairs), dtype=np.int64),
        "text_a": [a for a, _ in pairs],
        "text_b": [b for _, b in pairs],
    })
    # Several blocks, so that every actor of the pool gets work.
    num_blocks = max(1, min(-(-len(pairs) // rows_per_task), 4 * num_actors))
    block_rows = -(-len(pairs) // num_blocks)
    dataset = ray.data.from_arrow([table.slice(start, block_rows) for start in range(0, len(pairs), block_rows)])
    scored = dataset.map_batches(
        _PairScoringActor,
        fn_constructor_kwargs={
            "payload": payload,
            "predict_batch_size": batch_size,
            "num_threads": max(1, int(num_cpus_per_actor)),
            "model_kwargs": model_kwargs,
            "prompt": prompt,
        },
        batch_size=rows_per_task,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
    )
    indices, chunks = [], []
    for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
        indices.append(batch["index"])
        chunks.append(batch["score"])
    index = np.concatenate(indices)
    scores = np.concatenate(chunks)
    if len(index) != len(pairs) or not np.array_equal(np.sort(index), np.arange(len(pairs))):
        raise RuntimeError(f"Ray scoring returned {len(index)} scores for {len(pairs)} pairs")
    ordered = np.empty_like(scores)
    ordered[index] = scores
    return ordered


class RayPairScorer:
    """An evaluator `scorer` that scores on a Ray Data actor pool (see :func:`score_pairs_with_ray`).

    Example:
        >>> evaluator = CrossEncoderRerankingEvaluator(samples, scorer=RayPairScorer(num_actors=4))  # doctest: +SKIP
        >>> evaluator(model)  # doctest: +SKIP
    """

    def __init__(
        self,
        num_actors: int = 2,
        num_cpus_per_actor: float = 0.5,
        num_gpus_per_actor: float = 0.0,
        rows_per_task: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.num_actors = num_actors
        self.num_cpus_per_actor = num_cpus_per_actor
        self.num_gpus_per_actor = num_gpus_per_actor
        self.rows_per_task = rows_per_task
        self.model_kwargs = model_kwargs

    def __call__(
        self, model: Any, pairs: Sequence[Pair], batch_size: int = 32, show_progress_bar: bool | None = None,
        prompt: str | None = None,
    ) -> np.ndarray:
        return score_pairs_with_ray(
            model,
            pairs,
            batch_size=batch_size,
            num_actors=self.num_actors,
            num_cpus_per_actor=self.num_cpus_per_actor,
            num_gpus_per_actor=self.num_gpus_per_actor,
            rows_per_task=self.rows_per_task,
            model_kwargs=self.model_kwargs,
            prompt=prompt,
        )


# ----------------------------------------------------------------------------------------------
# Sharded over data-parallel (training) workers
# ----------------------------------------------------------------------------------------------


def shard_range(num_items: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous slice ``[start, end)`` of `num_items` that `rank` of `world_size` scores (sizes differ by <= 1).

    Example:
        >>> [shard_range(10, r, 3) for r in range(3)]
        [(0, 4), (4, 7), (7, 10)]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"`rank` must be in [0, world_size) with world_size >= 1, got rank={rank}, world_size={world_size}"
        )
    base, extra = divmod(num_items, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _unwrapped_for_inference(model: Any) -> contextlib.AbstractContextManager:
    """Score without the parallel wrapper (``CrossEncoder.unwrapped``): a DDP forward would broadcast buffers
    and hang when the ranks run different numbers of batches. Models without one score as they are."""
    unwrapped = getattr(model, "unwrapped", None)
    return unwrapped() if callable(unwrapped) else contextlib.nullcontext(model)


def _torch_all_gather(local: np.ndarray) -> list[np.ndarray]:
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return gathered


def evaluate_sharded(
    evaluator: Any,
    model: Any,
    output_path: str | None = None,
    epoch: int = -1,
    steps: int = -1,
    rank: int | None = None,
    world_size: int | None = None,
    all_gather: Callable[[np.ndarray], list[np.ndarray]] | None = None,
    scorer: Callable[..., np.ndarray] | None = None,
) -> dict[str, float]:
    """Evaluate with the pairs sharded over data-parallel workers; call it on every rank.

    Each rank scores ``pairs()[start:end]`` (see :func:`shard_range`) with `scorer` (default
    ``model.predict``, on the unwrapped model if it is DDP-wrapped), `all_gather` collects every rank's
    scores (default ``torch.distributed.all_gather_object``), and every rank computes the same metrics
    from the full array; only rank 0 writes the CSV file and the model card data. An evaluator without
    ``pairs()`` (a custom one) runs whole on rank 0 and its result is broadcast.

    Example (inside a Ray Train worker, after ``torch.distributed`` is set up):
        >>> metrics = evaluate_sharded(evaluator, model, output_path, epoch=1, steps=500)  # doctest: +SKIP
    """
    from raycross.evaluation.sequential import supports_pairs

    if rank is None or world_size is None:
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank() if distributed else 0
        world_size = dist.get_world_size() if distributed else 1
    if all_gather is None:
        all_gather = _torch_all_gather if world_size > 1 else (lambda local: [local])
    is_main = rank == 0

    if not supports_pairs(evaluator):
        result = None
        if is_main:
            with _unwrapped_for_inference(model) as bare:
                result = evaluator(bare, output_path, epoch, steps)
        if world_size > 1:
            import torch.distributed as dist

            box = [result]
            dist.broadcast_object_list(box, src=0)
            result = box[0]
        return result

    pairs = evaluator.pairs()
    start, end = shard_range(len(pairs), rank, world_size)
    score = scorer or predict_scorer
    with _unwrapped_for_inference(model) as bare:
        local = np.asarray(score(bare, pairs[start:end], batch_size=evaluator.batch_size, show_progress_bar=False,
                                 **evaluator.score_kwargs(bare)))
    shards = all_gather(local)
    if len(shards) != world_size:
        raise RuntimeError(f"all_gather returned {len(shards)} shards for world_size={world_size}")
    nonempty = [np.asarray(s) for s in shards if len(s)]
    scores = np.concatenate(nonempty) if nonempty else local[:0]
    return evaluator.compute_metrics(
        scores,
        model=model if is_main else None,
        output_path=output_path if is_main else None,
        epoch=epoch,
        steps=steps,
    )
