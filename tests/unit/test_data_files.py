"""The edge cases of reading data files, decided once in raycross.data (training, mining, configs and the
evaluators all read through it)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross.config import ConfigError, load_source
from raycross.data import data_files, read_files, to_arrow, write_file
from raycross.mining.inputs import prepare_inputs

ROWS = [{"query": "q1", "passage": "p1", "label": 1}, {"query": "q2", "passage": "p2", "label": 0}]


def test_json_array_and_json_lines_read_the_same_rows(tmp_path):
    (tmp_path / "array.json").write_text("\n  " + json.dumps(ROWS, indent=1))  # leading blank lines
    (tmp_path / "lines.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "lines.json").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    for name in ("array.json", "lines.jsonl", "lines.json"):
        assert read_files(tmp_path / name).to_pylist() == ROWS
        assert to_arrow(str(tmp_path / name)).to_pylist() == ROWS  # the trainer's in-memory path
        assert load_source({"path": str(tmp_path / name)}, "data.train").to_list() == ROWS  # configs
    assert prepare_inputs(str(tmp_path / "array.json")).queries.to_pylist() == ["q1", "q2"]  # mining


def test_directories_expand_sorted_and_empty_ones_are_errors(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS[1:]), tmp_path / "b.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[:1]), tmp_path / "a.parquet")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".raycross-mined.json").write_text("{}")  # bookkeeping files: hidden or "_", never data
    (tmp_path / "_SUCCESS.json").write_text("{}")
    assert [p.rsplit("/", 1)[-1] for p in data_files(tmp_path)] == ["a.parquet", "b.parquet"]
    assert to_arrow(str(tmp_path)).to_pylist() == ROWS
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no .parquet/.json/.jsonl/.csv files"):
        to_arrow(str(empty))
    with pytest.raises(ValueError, match="holds no"):
        prepare_inputs(str(empty))
    with pytest.raises(ConfigError) as info:
        load_source({"path": str(empty)}, "data.train")
    assert info.value.key == "data.train.path" and "holds no" in str(info.value)


def test_mixed_formats_and_missing_columns_are_named(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("query,passage,label\nq,p,1\n")
    with pytest.raises(ValueError, match=r"mix formats \['csv', 'parquet'\]"):
        data_files([tmp_path / "a.parquet", tmp_path / "b.csv"])
    with pytest.raises(ValueError, match=r"columns \['answer'\] not found"):
        read_files(tmp_path / "a.parquet", columns=["query", "answer"])
    assert to_arrow(str(tmp_path / "a.parquet"), columns=["label", "query"]).column_names == ["label", "query"]


def test_one_dataset_is_expected_where_one_is_converted():
    import datasets

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)})
    with pytest.raises(TypeError, match=r"found a DatasetDict of datasets \['train'\]"):
        to_arrow(splits)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "json", "csv"])
def test_write_file_round_trips(tmp_path, suffix):
    table = pa.Table.from_pylist(ROWS)
    path = write_file(table, tmp_path / "out" / f"rows.{suffix}")
    assert read_files(path).to_pylist() == ROWS
    with pytest.raises(ValueError, match="expected a .parquet"):
        write_file(table, tmp_path / "rows.txt")
