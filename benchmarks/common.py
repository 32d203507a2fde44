"""Shared helpers for the side-by-side benchmarks: machine facts, timing, data loading."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAYCROSS_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine_report() -> str:
    """One block describing the machine, load and library versions (printed by every benchmark)."""
    import torch
    import transformers

    lines = [
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}",
        f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"torch {torch.__version__} (threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}), "
        f"transformers {transformers.__version__}",
    ]
    for name in ("raycross", "sentence_transformers", "ray", "faiss"):
        try:
            module = __import__(name)
            lines.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            lines.append(f"{name} not installed")
    if torch.cuda.is_available():
        lines.append(f"gpu: {torch.cuda.get_device_name(0)}")
    return "\n".join(lines)


def alternate(runs: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 1) -> dict[str, list[float]]:
    """Time each callable `repeats` times, alternating between them after `warmup` untimed rounds."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def wordnet_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` real (query, definition) pairs from the WordNet training pairs, in a shuffled order."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(SHARED_DATA / "wordnet-context2gloss" / "train-pairs.parquet")
    idx = np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False)
    rows = table.take(idx).to_pylist()
    return [(r["query"], r["passage"]) for r in rows]
