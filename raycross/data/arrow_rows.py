"""Row access without copying whole tables: gather rows from a chunked (e.g. memory-mapped) table chunk by
chunk, and read row ranges of parquet files row group by row group.

``pyarrow.Table.take`` concatenates every chunk of a chunked column first, copying the whole column on
each call: for a memory-mapped HF dataset that is the whole dataset per batch. :class:`ChunkedRows`
gathers from the chunks it needs only.

Example:
    >>> import pyarrow as pa
    >>> t = pa.concat_tables([pa.table({"x": [0, 1]}), pa.table({"x": [2, 3]})])
    >>> ChunkedRows(t).take(np.array([3, 0, 2])).column("x").to_pylist()
    [3, 0, 2]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class ChunkedRows:
    """A table's record batches (zero-copy slices) and a gather over them."""

    def __init__(self, table: pa.Table) -> None:
        self.schema = table.schema
        self.batches = [b for b in table.to_batches() if b.num_rows]
        self.offsets = np.cumsum([0, *[b.num_rows for b in self.batches]]).astype(np.int64)
        self.num_rows = int(self.offsets[-1])

    def take(self, indices: np.ndarray) -> pa.Table:
        """The rows at `indices` (in that order) as a table of one chunk."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(self.batches) <= 1:
            if not self.batches:
                return self.schema.empty_table()
            return pa.Table.from_batches([self.batches[0].take(pa.array(indices))])
        chunk = np.searchsorted(self.offsets, indices, side="right") - 1
        order = np.argsort(chunk, kind="stable")
        pieces = []
        sorted_chunks = chunk[order]
        bounds = np.flatnonzero(np.diff(sorted_chunks)) + 1
        for group in np.split(order, bounds):
            c = int(chunk[group[0]])
            pieces.append(self.batches[c].take(pa.array(indices[group] - self.offsets[c])))
        gathered = pa.Table.from_batches(pieces, schema=self.schema).combine_chunks()
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.arange(len(order))
        return gathered.take(pa.array(inverse))


class ParquetRows:
    """Rows of parquet files (in the given order) read by global row range, row group by row group.

    Example:
        >>> rows = ParquetRows(["a.parquet", "b.parquet"])  # doctest: +SKIP
        >>> rows.read(10, 20).num_rows  # doctest: +SKIP
        10
    """

    def __init__(self, paths: list[str]) -> None:
        self.paths = [str(p) for p in paths]
        self.groups: list[tuple[int, int, int, int]] = []  # (file, row group, first global row, rows)
        offset = 0
        self.schema = pq.read_schema(self.paths[0]) if self.paths else pa.schema([])
        self.num_bytes = 0
        for i, path in enumerate(self.paths):
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                self.groups.append((i, g, offset, group.num_rows))
                self.num_bytes += group.total_byte_size
                offset += group.num_rows
        self.num_rows = offset
        self._starts = np.array([g[2] for g in self.groups], dtype=np.int64)

    def read(self, start: int, stop: int, columns: list[str] | None = None) -> pa.Table:
        first = max(0, int(np.searchsorted(self._starts, start, side="right")) - 1)
        pieces = []
        for file, group, offset, rows in self.groups[first:]:
            if offset >= stop:
                break
            if offset + rows <= start:
                continue
            table = pq.ParquetFile(self.paths[file]).read_row_group(group, columns=columns)
            lo, hi = max(start - offset, 0), min(stop - offset, rows)
            pieces.append(table.slice(lo, hi - lo))
        if not pieces:
            schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(pieces, promote_options="default")
