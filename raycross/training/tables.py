"""Datasets as Arrow tables: conversion on the driver (in-process runs), materializing a Ray shard on a
worker, and cutting batches (texts + labels) out of a table by row indices.

Example:
    >>> table = to_arrow_table({"query": ["q1", "q2"], "passage": ["p1", "p2"], "label": [1, 0]})
    >>> shard = Shard(table, ["query", "passage"], "label")
    >>> inputs, labels = shard.batch(np.array([1, 0]))
    >>> inputs, labels.tolist()
    ([['q2', 'q1'], ['p2', 'p1']], [0, 1])
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from raycross.data.arrow_rows import ChunkedRows
from raycross.training.samplers import TextIds

_FILE_READERS = (".parquet", ".json", ".jsonl", ".csv")


def _paths(data: Any) -> list[str] | None:
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return sorted(str(p) for p in path.iterdir() if p.suffix.lower() in _FILE_READERS)
        return [str(path)]
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
        return [str(d) for d in data]
    return None


def _read_file(path: str) -> pa.Table:
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    if suffix in (".json", ".jsonl"):
        with open(path, encoding="utf8") as f:
            head = f.read(1)
        if head == "[":
            with open(path, encoding="utf8") as f:
                return pa.Table.from_pylist(json.load(f))
        import pyarrow.json as pjson

        return pjson.read_json(path)
    raise ValueError(f"dataset path {path!r}: expected a .parquet, .json, .jsonl or .csv file")


def to_arrow_table(data: Any) -> pa.Table:
    """One dataset (HF Dataset, Ray Dataset, pandas, list of dicts, dict of columns, file paths) as a table.

    Example:
        >>> to_arrow_table([{"a": "x", "label": 1}]).num_rows
        1
    """
    if isinstance(data, pa.Table):
        return data
    if type(data).__name__ == "Dataset" and hasattr(data, "with_format") and hasattr(data, "column_names"):
        return data.with_format("arrow")[:]  # HF datasets: honours select/shuffle indices
    if type(data).__name__ in ("Dataset", "MaterializedDataset") and hasattr(data, "to_arrow_refs"):
        import ray

        tables = ray.get(data.to_arrow_refs())
        return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    if type(data).__name__ == "DataFrame" and hasattr(data, "to_dict"):
        return pa.Table.from_pandas(data, preserve_index=False)
    paths = _paths(data)
    if paths is not None:
        for p in paths:
            if not Path(p).exists():
                raise FileNotFoundError(f"dataset path {p!r} does not exist")
        return pa.concat_tables([_read_file(p) for p in paths], promote_options="default")
    if isinstance(data, Mapping):
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"dict of columns has columns of different lengths: {lengths}")
        return pa.table({k: list(v) for k, v in data.items()})
    if isinstance(data, (list, tuple)):
        if not all(isinstance(r, Mapping) for r in data):
            raise TypeError("dataset list: expected a list of dicts (one per row)")
        return pa.Table.from_pylist([dict(r) for r in data])
    raise TypeError(
        "dataset: expected a datasets.Dataset, ray.data.Dataset, pandas DataFrame, list of dicts, dict of columns "
        f"or parquet/json/jsonl/csv path(s); found {type(data).__name__}"
    )


def materialize(iterator: Any, columns: list[str]) -> pa.Table:
    """Read a whole Ray Data shard (a ``DataIterator``) into one table with `columns`, in arrival order."""
    tables = [
        block if isinstance(block, pa.Table) else pa.Table.from_pandas(block, preserve_index=False)
        for block in iterator.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2)
    ]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pa.table({c: pa.array([], type=pa.string()) for c in columns})
    table = pa.concat_tables(tables, promote_options="default")
    return table.select(columns)


class Shard:
    """One dataset (or one worker's part of it) held as an Arrow table, cut into batches by row index.

    ``batch(indices)`` returns the input columns in order (lists of texts, or lists of lists of texts for
    listwise columns) and the labels: a tensor for scalar labels (int64 or float32), a list of lists for
    list labels, None without a label column.
    """

    def __init__(self, table: pa.Table, input_columns: list[str], label_column: str | None) -> None:
        self.table = table  # not combined: a memory-mapped table stays mapped
        self._rows = ChunkedRows(table)
        self.input_columns = list(input_columns)
        self.label_column = label_column
        self._text_ids: TextIds | None = None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def batch(self, indices: np.ndarray) -> tuple[list[list[Any]], Any]:
        taken = self._rows.take(indices)
        inputs = [taken.column(c).to_pylist() for c in self.input_columns]
        return inputs, self._labels(taken)

    def _labels(self, taken: pa.Table) -> Any:
        if self.label_column is None:
            return None
        column = taken.column(self.label_column)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            return column.to_pylist()
        values = column.to_numpy()
        if values.dtype == np.bool_:
            values = values.astype(np.int64)
        if values.dtype.kind == "f":
            return torch.from_numpy(values.astype(np.float32))
        if values.dtype.kind in "iu":
            return torch.from_numpy(values.astype(np.int64))
        return column.to_pylist()

    def label_array(self) -> np.ndarray | None:
        if self.label_column is None:
            return None
        return self.table.column(self.label_column).to_numpy()

    def text_ids(self) -> TextIds:
        """Integer ids of every text of every row (built once): what NO_DUPLICATES compares."""
        if self._text_ids is None:
            self._text_ids = TextIds.from_columns([self.table.column(c) for c in self.input_columns])
        return self._text_ids

    def text_lengths(self) -> np.ndarray:
        """Characters of input text per row (all input columns, list columns summed): a length proxy."""
        import pyarrow.compute as pc

        total = np.zeros(self.num_rows, dtype=np.int64)
        for name in self.input_columns:
            column = self.table.column(name)
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                flat = pc.utf8_length(pc.list_flatten(column)).to_numpy(zero_copy_only=False)
                owner = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
                total += np.bincount(owner, weights=flat, minlength=self.num_rows).astype(np.int64)
            else:
                total += pc.utf8_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return total
