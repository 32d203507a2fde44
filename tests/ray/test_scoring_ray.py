"""Teacher scoring on a Ray Data actor pool: same scores as in this process, and a rerun scores only the
chunks that are missing."""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow.parquet as pq

from raycross.scoring import score_with_teacher


def test_actor_pool_matches_local_and_resumes(ray_session, tiny_model, tmp_path):
    rows = {"query": [f"a {w}" for w in ("cat", "dog", "man", "boy", "girl", "car", "house")],
            "docs": [["water", "food"], ["red car"], ["a woman", "street", "city"], ["play"], ["run", "walk"],
                     ["big"], ["small", "old"]]}
    local = score_with_teacher(rows, tiny_model, tmp_path / "local", chunk_rows=2, execution="local",
                               show_progress_bar=False)
    out = tmp_path / "ray"
    score_with_teacher(rows, tiny_model, out, chunk_rows=2, execution="ray", num_workers=2, show_progress_bar=False)
    parts = sorted(glob.glob(f"{out}/part-*.parquet"))
    assert len(parts) == 4
    got, want = pq.read_table(parts).to_pylist(), pq.read_table(sorted(glob.glob(f"{local}/part-*.parquet"))).to_pylist()
    assert [r["query"] for r in got] == rows["query"]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5, atol=1e-6)

    # a rerun after losing two chunks writes exactly those two again
    os.remove(parts[1])
    os.remove(parts[3])
    kept = {p: os.stat(p).st_mtime_ns for p in (parts[0], parts[2])}
    score_with_teacher(rows, tiny_model, out, chunk_rows=2, execution="ray", num_workers=2, show_progress_bar=False)
    assert sorted(glob.glob(f"{out}/part-*.parquet")) == parts
    assert {p: os.stat(p).st_mtime_ns for p in kept} == kept
    assert pq.read_table(parts).to_pylist() == got
