"""The column contract and the dataset sources, without Ray."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross.data import (
    DatasetSpec,
    InputExample,
    column_names,
    first_row,
    is_dataset_dict,
    load_records,
    split_columns,
)

ROWS = [
    {"query": "what is ray", "passage": "a compute engine", "label": 1},
    {"query": "what is ray", "passage": "a fish", "label": 0},
]


@pytest.mark.parametrize(
    "names, expected",
    [
        (["query", "passage", "label"], (["query", "passage"], "label")),
        (["scores", "a", "b", "c"], (["a", "b", "c"], "scores")),
        (["anchor", "positive"], (["anchor", "positive"], None)),
        (["x", "labels", "y"], (["x", "y"], "labels")),
        (["score", "q", "d"], (["q", "d"], "score")),
    ],
)
def test_split_columns(names, expected):
    assert split_columns(names) == expected


def test_split_columns_errors():
    with pytest.raises(ValueError, match="several label columns"):
        split_columns(["q", "label", "score"])
    with pytest.raises(ValueError, match="no input columns"):
        split_columns(["label"])


def _spec_of_row(row):
    return DatasetSpec.of([row])


def test_column_spec_lists_and_bad_values():
    spec = _spec_of_row({"query": "q", "docs": ["a", "b"], "labels": [1, 0]})
    assert spec.input_columns == ["query", "docs"] and spec.label_column == "labels" and spec.list_columns == ["docs"]
    with pytest.raises(TypeError, match="column 'passage'"):
        _spec_of_row({"query": "q", "passage": 3, "label": 1})
    with pytest.raises(TypeError, match="label column 'label'"):
        _spec_of_row({"query": "q", "passage": "p", "label": "yes"})
    with pytest.raises(ValueError, match="missing value"):
        _spec_of_row({"query": "q", "passage": "p", "label": None})


def _write_all_formats(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    (tmp_path / "d.csv").write_text("query,passage,label\n" + "".join(f"{r['query']},{r['passage']},{r['label']}\n" for r in ROWS))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "json", "csv"])
def test_sources_from_files(tmp_path, fmt):
    _write_all_formats(tmp_path)
    path = str(tmp_path / f"d.{fmt}")
    assert column_names(path) == ["query", "passage", "label"]
    assert first_row(path) == ROWS[0]
    spec = DatasetSpec.of(path)
    assert spec.input_columns == ["query", "passage"] and spec.label_column == "label"


def test_sources_in_memory():
    from datasets import Dataset, DatasetDict

    hf = Dataset.from_list(ROWS)
    columns = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    for data in (hf, ROWS, columns):
        assert column_names(data) == ["query", "passage", "label"]
        assert first_row(data) == ROWS[0]
        assert load_records(data) == ROWS
    assert is_dataset_dict(DatasetDict({"a": hf})) and is_dataset_dict({"a": hf, "b": ROWS})
    assert not is_dataset_dict(columns)


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        column_names(str(tmp_path / "missing.parquet"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"expected a \.parquet"):
        column_names(str(tmp_path / "x.txt"))
    with pytest.raises(ValueError, match="empty"):
        first_row({"query": [], "label": []})
    with pytest.raises(TypeError, match="column names"):
        column_names(42)


def test_input_example():
    ex = InputExample(texts=("q", "d"), label=1)
    assert ex.texts == ["q", "d"] and ex.label == 1
    with pytest.raises(TypeError, match="InputExample.texts"):
        InputExample(texts=["q", 3])
