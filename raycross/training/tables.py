"""Training tables: materializing a Ray shard on a worker, and cutting batches (texts + labels) out of an
Arrow table by row indices (the conversion of user data to Arrow is :func:`raycross.data.to_arrow`).

Example:
    >>> from raycross.data import to_arrow
    >>> table = to_arrow({"query": ["q1", "q2"], "passage": ["p1", "p2"], "label": [1, 0]})
    >>> shard = Shard(table, ["query", "passage"], "label")
    >>> inputs, labels = shard.batch(np.array([1, 0]))
    >>> inputs, labels.tolist()
    ([['q2', 'q1'], ['p2', 'p1']], [0, 1])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from raycross.data.arrow_rows import ChunkedRows
from raycross.training.samplers import TextIds


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
