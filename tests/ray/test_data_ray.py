"""Conversion of every accepted source to Ray Data."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross.data import to_ray_dataset

ROWS = [{"query": f"q{i}", "passage": f"p{i}", "label": i % 2} for i in range(10)]


def _sorted(rows):
    return sorted(({k: r[k] for k in ("query", "passage", "label")} for r in rows), key=lambda r: r["query"])


@pytest.mark.parametrize("kind", ["hf", "list", "columns", "parquet", "jsonl", "csv", "dir", "ray"])
def test_to_ray_dataset(ray_session, tmp_path, kind):
    from datasets import Dataset

    if kind == "hf":
        data = Dataset.from_list(ROWS)
    elif kind == "list":
        data = ROWS
    elif kind == "columns":
        data = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    elif kind in ("parquet", "dir"):
        pq.write_table(pa.Table.from_pylist(ROWS[:5]), tmp_path / "a.parquet")
        pq.write_table(pa.Table.from_pylist(ROWS[5:]), tmp_path / "b.parquet")
        data = str(tmp_path) if kind == "dir" else [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    elif kind == "jsonl":
        (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
        data = str(tmp_path / "d.jsonl")
    elif kind == "csv":
        (tmp_path / "d.csv").write_text("query,passage,label\n" + "".join(f"{r['query']},{r['passage']},{r['label']}\n" for r in ROWS))
        data = str(tmp_path / "d.csv")
    else:
        data = ray_session.data.from_items(ROWS)
    ds = to_ray_dataset(data)
    assert isinstance(ds, ray_session.data.Dataset)
    assert _sorted(ds.take_all()) == _sorted(ROWS)


def test_files_are_read_lazily(ray_session, shared_data):
    # The 255k-row file becomes a lazy Ray Dataset: the driver plans the read, Ray tasks execute it.
    ds = to_ray_dataset(str(shared_data / "wordnet-context2gloss" / "train-pairs.parquet"))
    assert ds.columns() == ["query", "passage", "label"]
    assert ds.count() == 255127
    assert len(ds.take(3)) == 3
