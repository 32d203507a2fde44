"""Block sources: one worker's part of a dataset as a stream of Arrow blocks, epoch by epoch, in a seeded
order, never whole in memory. What the streaming batch sampler (:mod:`raycross.training.streaming`)
reads from.

- :class:`TableBlocks`: a table this process holds (in memory, or memory-mapped like an HF dataset):
  zero-copy slices, the slice order shuffled per epoch.
- :class:`ParquetBlocks`: parquet files read row group by row group (in pieces of ``block_rows``), the
  row-group order shuffled per epoch.
- :class:`RayShardBlocks`: a Ray Train worker's shard (``ray.train.get_dataset_shard``): Ray Data reads,
  in the same order on every (re)start (``preserve_order``).

Example:
    >>> import pyarrow as pa
    >>> blocks = TableBlocks(pa.table({"x": list(range(6))}), block_rows=2, seed=0)
    >>> sorted(v for b in blocks.epoch_blocks(0) for v in b.column("x").to_pylist())
    [0, 1, 2, 3, 4, 5]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from raycross.data.arrow_rows import ParquetRows


def _epoch_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 104729, *[int(s) for s in stream]])


class TableBlocks:
    """Slices of `table` (``block_rows`` each) in a seeded order per epoch."""

    def __init__(self, table: pa.Table, block_rows: int = 8192, seed: int = 0, columns: list[str] | None = None) -> None:
        self.table = table.select(columns) if columns else table
        self.block_rows = max(1, int(block_rows))
        self.seed = seed
        self.num_rows = self.table.num_rows

    def epoch_blocks(self, epoch: int, stream: tuple[int, ...] = ()) -> Iterator[pa.Table]:
        n_blocks = -(-self.num_rows // self.block_rows)
        for b in _epoch_rng(self.seed, epoch, *stream).permutation(n_blocks):
            yield self.table.slice(int(b) * self.block_rows, self.block_rows)


class ParquetBlocks:
    """Row groups of parquet files (read in pieces of at most ``block_rows`` rows), shuffled per epoch."""

    def __init__(self, paths: list[str], block_rows: int = 8192, seed: int = 0, columns: list[str] | None = None) -> None:
        self.rows = ParquetRows(paths)
        self.block_rows = max(1, int(block_rows))
        self.seed = seed
        self.columns = columns
        self.num_rows = self.rows.num_rows

    def epoch_blocks(self, epoch: int, stream: tuple[int, ...] = ()) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        files: dict[int, Any] = {}
        for unit in _epoch_rng(self.seed, epoch, *stream).permutation(len(self.rows.groups)):
            file, group, _, _ = self.rows.groups[int(unit)]
            if file not in files:
                files = {file: pq.ParquetFile(self.rows.paths[file])}  # one open file at a time
            for batch in files[file].iter_batches(batch_size=self.block_rows, row_groups=[group],
                                                  columns=self.columns, use_threads=False):
                yield pa.Table.from_batches([batch])


class RayShardBlocks:
    """A Ray Train dataset shard (a ``DataIterator``), block by block; Ray fixes the order (the trainer
    sets ``preserve_order``), so a rerun reads the same rows in the same order."""

    def __init__(self, iterator: Any, num_rows: int, block_rows: int = 8192, columns: list[str] | None = None) -> None:
        self.iterator = iterator
        self.num_rows = num_rows
        self.block_rows = max(1, int(block_rows))
        self.columns = columns

    def epoch_blocks(self, epoch: int, stream: tuple[int, ...] = ()) -> Iterator[pa.Table]:
        for block in self.iterator.iter_batches(batch_size=self.block_rows, batch_format="pyarrow",
                                                prefetch_batches=1):
            if not isinstance(block, pa.Table):
                block = pa.Table.from_pandas(block, preserve_index=False)
            yield block.select(self.columns) if self.columns else block
