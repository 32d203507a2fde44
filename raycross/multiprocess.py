"""Multi-process / multi-device scoring with sentence-transformers 6.2's names.

``model.start_multi_process_pool(["cpu", "cpu"])`` starts one spawned process per device (the model is
shared with them); ``model.predict(pairs, pool=pool)`` splits the pairs into chunks, the processes score
them, the results come back in input order; ``model.stop_multi_process_pool(pool)`` ends them.
``model.predict(pairs, device=["cuda:0", "cuda:1"])`` does all three in one call.
``start_multi_process_pool(..., backend="ray")`` scores on Ray actors instead (one per device).

Example:
    >>> pool = model.start_multi_process_pool(["cpu", "cpu"])  # doctest: +SKIP
    >>> scores = model.predict(pairs, pool=pool)  # doctest: +SKIP
    >>> model.stop_multi_process_pool(pool)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import queue
from collections.abc import Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)


def default_devices() -> list[str]:
    """Every CUDA device, else 4 CPU processes (as sentence-transformers)."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"] * 4


def start_pool(model: Any, target_devices: list[str] | None = None, backend: str = "process") -> dict[str, Any]:
    """Start scoring workers for `model` on `target_devices`; see the module docstring."""
    devices = [str(d) for d in (target_devices or default_devices())]
    if not devices:
        raise ValueError("target_devices: expected at least one device, found an empty list")
    if backend == "ray":
        from raycross.evaluation.distributed import RayPairScorer

        gpus = 1.0 if any(d.startswith("cuda") for d in devices) else 0.0
        logger.info("Starting %d Ray scoring actors", len(devices))
        return {"ray": RayPairScorer(num_actors=len(devices), num_gpus_per_actor=gpus), "processes": devices}
    if backend != "process":
        raise ValueError(f"backend: expected 'process' or 'ray', found {backend!r}")
    logger.info("Starting multi-process pool on devices: %s", ", ".join(devices))
    model.to("cpu")
    model.share_memory()
    ctx = torch.multiprocessing.get_context("spawn")
    inputs, outputs = ctx.Queue(), ctx.Queue()
    processes = []
    for device in devices:
        process = ctx.Process(target=_worker, args=(device, model, inputs, outputs), daemon=True)
        process.start()
        processes.append(process)
    return {"input": inputs, "output": outputs, "processes": processes}


def stop_pool(pool: dict[str, Any]) -> None:
    """Stop the processes of a pool from :func:`start_pool` (a Ray pool needs nothing)."""
    if "ray" in pool:
        return
    for process in pool["processes"]:
        process.terminate()
    for process in pool["processes"]:
        process.join()
        process.close()
    pool["input"].cancel_join_thread()
    pool["input"].close()
    pool["output"].close()


def _worker(device: str, model: Any, inputs: Any, outputs: Any) -> None:
    model.to(device)
    while True:
        chunk_id, pairs, kwargs = inputs.get()
        try:
            scores = model.predict(pairs, convert_to_tensor=True, **kwargs).cpu()
        except Exception as exc:  # reported to the caller, who raises it
            logger.exception("scoring chunk %d on %s failed", chunk_id, device)
            scores = RuntimeError(f"{type(exc).__name__} on {device}: {exc}")
        outputs.put((chunk_id, scores))


def score_with_pool(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    pool: dict[str, Any] | None,
    devices: list[str] | None,
    chunk_size: int | None,
    batch_size: int,
    activation_fn: Any,
    apply_softmax: bool,
    prompt: str | None = None,
) -> torch.Tensor:
    """Scores of `pairs` (a tensor, input order) from a pool, or a temporary pool on `devices`."""
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    created = pool is None
    if created:
        pool = start_pool(model, devices)
    try:
        if "ray" in pool:
            if activation_fn is not None or apply_softmax:
                raise ValueError("pool: a Ray pool scores with the model's own activation_fn; "
                                 "drop activation_fn/apply_softmax or use a process pool")
            import numpy as np

            return torch.as_tensor(np.asarray(pool["ray"](model, list(pairs), batch_size=batch_size, prompt=prompt)))
        if chunk_size is None:
            chunk_size = max(1, min(math.ceil(len(pairs) / len(pool["processes"]) / 10), 5000))
        kwargs = {"batch_size": batch_size, "activation_fn": activation_fn, "apply_softmax": apply_softmax,
                  "show_progress_bar": False, "prompt": prompt}
        starts = range(0, len(pairs), chunk_size)
        for chunk_id, start in enumerate(starts):
            pool["input"].put((chunk_id, list(pairs[start : start + chunk_size]), kwargs))
        results: list[Any] = [None] * len(starts)
        for _ in starts:
            chunk_id, scores = _next_result(pool)
            results[chunk_id] = scores
        for result in results:
            if isinstance(result, Exception):
                raise result
        return torch.cat(results)
    finally:
        if created:
            stop_pool(pool)


def _next_result(pool: dict[str, Any], poll_s: float = 1.0) -> Any:
    while True:
        try:
            return pool["output"].get(timeout=poll_s)
        except queue.Empty:
            dead = [p for p in pool["processes"] if not p.is_alive()]
            if dead:
                details = ", ".join(f"pid {p.pid} (exit code {p.exitcode})" for p in dead)
                raise RuntimeError(f"{len(dead)} multi-process pool worker(s) died unexpectedly: {details}. "
                                   "Stop the pool and start a new one before retrying.") from None
