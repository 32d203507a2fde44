"""Streamed training data: the batches of one worker's shard cut out of a bounded window of rows.

A :class:`WindowedBatches` reads Arrow blocks (:mod:`raycross.data.blocks`, in a seeded order), collects
them into a window of about ``window_rows`` rows, runs the chosen batch sampler on the window (shuffled
batches, NO_DUPLICATES, GROUP_BY_LABEL, length grouping: :class:`~raycross.training.samplers.ShardSampler`)
and hands out its full batches. Rows the window could not place in a full batch (the remainder, rows
deferred by NO_DUPLICATES, unpaired GROUP_BY_LABEL rows) carry over into the next window; the last window
hands out everything, so each row of the shard appears exactly once per epoch. Memory holds one window
plus one block, whatever the shard size.

Everything is a function of (seed, epoch, worker, dataset): a rerun produces the same batches, so resuming
at micro-batch ``m`` replays the epoch's rows up to there without tokenizing or training on them (the
skipped batches are never gathered into texts) and continues at exactly the next one.

Every worker takes the same number of batches per dataset and epoch (:func:`nominal_batches`, reduced with
a min over workers): a stream that runs short (GROUP_BY_LABEL leaves rows out) tops up with reshuffled
batches of its last window; extra batches are left unread. No worker waits on another.

Example:
    >>> import pyarrow as pa
    >>> from raycross.data.blocks import TableBlocks
    >>> table = pa.table({"q": [f"q{i}" for i in range(10)], "d": ["d"] * 10})
    >>> stream = WindowedBatches(TableBlocks(table, 4), ["q", "d"], None, "batch_sampler", 4, seed=0, window_rows=6)
    >>> [n for _, _, n in stream.epoch(0, num_batches=3)]
    [4, 4, 2]
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from raycross.training.arguments import BatchSamplers
from raycross.training.samplers import ShardSampler, epoch_rng
from raycross.training.tables import Shard

logger = logging.getLogger(__name__)

#: above this estimated in-memory size per worker, ``streaming=None`` streams a dataset of files / a Ray Dataset
STREAM_AUTO_BYTES = 1 << 30

_TOP_UP = 1_000_003  # stream id offset of the top-up passes over the last window


def nominal_batches(kind: BatchSamplers | str, num_rows: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch a streamed shard of `num_rows` rows promises (GROUP_BY_LABEL: full batches only).

    Example:
        >>> nominal_batches("batch_sampler", 10, 4, drop_last=False), nominal_batches("group_by_label", 10, 4, False)
        (3, 2)
    """
    kind = BatchSamplers.parse(kind, "batch_sampler")
    if drop_last or kind is BatchSamplers.GROUP_BY_LABEL:
        return num_rows // batch_size
    return -(-num_rows // batch_size)


class WindowedBatches:
    """One dataset of one worker, streamed: ``epoch(e, num_batches, skip)`` yields (inputs, labels, rows).

    Args:
        blocks: a block source (``epoch_blocks(epoch, stream)``).
        input_columns, label_column: the column contract of the dataset.
        kind: the batch sampler (``batch_sampler``, ``no_duplicates``, ``group_by_label``).
        batch_size: rows per batch.
        seed: the run's seed.
        window_rows: rows held at once (the shuffle window).
        drop_last: drop the last incomplete batch of the epoch.
        group_by_length: batches of similar text length within the window.
        stream: (dataset index, worker rank): makes each worker's and dataset's shuffle its own.
        row_check: called as ``row_check(block, offset)`` on every block as it arrives (``offset``: rows of
            the epoch read before it), e.g. a row validator that raises on a bad row.
    """

    def __init__(
        self,
        blocks: Any,
        input_columns: list[str],
        label_column: str | None,
        kind: BatchSamplers | str,
        batch_size: int,
        seed: int,
        window_rows: int = 16384,
        drop_last: bool = False,
        group_by_length: bool = False,
        stream: tuple[int, ...] = (),
        row_check: Any = None,
    ) -> None:
        self.blocks = blocks
        self.row_check = row_check
        self.input_columns = list(input_columns)
        self.label_column = label_column
        self.kind = BatchSamplers.parse(kind, "batch_sampler")
        self.batch_size = batch_size
        self.seed = seed
        self.window_rows = max(int(window_rows), 2 * batch_size)
        self.drop_last = drop_last
        self.group_by_length = group_by_length
        self.stream = tuple(stream)
        self.rows_read = 0
        self.peak_window_rows = 0

    # ------------------------------------------------------------------ the epoch
    def epoch(self, epoch: int, num_batches: int, skip: int = 0) -> Iterator[tuple[list[list[Any]], Any, int]]:
        """Exactly `num_batches` batches of `epoch`, the first `skip` of them passed over (resume)."""
        produced = 0
        last: Shard | None = None
        for shard, batches in self._windows(epoch):
            last = shard
            for rows in batches:
                if produced >= num_batches:
                    return  # the rest of the stream is left unread
                if produced >= skip:
                    inputs, labels = shard.batch(rows)
                    yield inputs, labels, len(rows)
                produced += 1
        if produced < num_batches:
            if last is None or last.num_rows == 0:
                raise ValueError(f"a streamed shard (stream {self.stream}) has no rows: it cannot fill "
                                 f"{num_batches} batches")
            logger.debug("stream %s ran out after %d of %d batches: topping up from its last window",
                         self.stream, produced, num_batches)
        attempt = 0
        while produced < num_batches:
            attempt += 1
            rng = epoch_rng(self.seed, epoch, _TOP_UP + attempt, *self.stream)
            batches = self._sampler(last, drop_last=False).one_pass(rng)
            if not batches:
                raise ValueError(f"batch sampler {self.kind.value!r} produced no batch from a window of "
                                 f"{last.num_rows} rows with batch size {self.batch_size}")
            for rows in batches:
                if produced >= num_batches:
                    return
                if produced >= skip:
                    inputs, labels = last.batch(rows)
                    yield inputs, labels, len(rows)
                produced += 1

    # ------------------------------------------------------------------ windows
    def _windows(self, epoch: int) -> Iterator[tuple[Shard, list[np.ndarray]]]:
        """(window, its batches) for the epoch; leftover rows carry over to the next window."""
        carry: pa.Table | None = None
        pending: list[pa.Table] = []
        pending_rows = 0
        # the first window's size varies with the epoch: windows group other rows in every epoch, even
        # when the block order is fixed (Ray Data shards)
        rng = epoch_rng(self.seed, epoch, 0, *self.stream)
        target = int(rng.integers(self.window_rows // 2, self.window_rows + 1))
        index = 0
        self.rows_read = 0
        for block in self.blocks.epoch_blocks(epoch, self.stream):
            if block.num_rows == 0:
                continue
            if self.row_check is not None:
                self.row_check(block, self.rows_read)
            pending.append(block)
            pending_rows += block.num_rows
            self.rows_read += block.num_rows
            held = pending_rows + (carry.num_rows if carry is not None else 0)
            if held < target:
                continue
            window = self._concat(carry, pending)
            pending, pending_rows = [], 0
            shard, batches, carry = self._cut(window, epoch, index, final=False)
            index += 1
            target = self.window_rows
            yield shard, batches
        window = self._concat(carry, pending)
        if window is not None and window.num_rows:
            shard, batches, _ = self._cut(window, epoch, index, final=True)
            yield shard, batches

    @staticmethod
    def _concat(carry: pa.Table | None, pending: list[pa.Table]) -> pa.Table | None:
        tables = ([carry] if carry is not None and carry.num_rows else []) + pending
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default").combine_chunks()

    def _sampler(self, shard: Shard, drop_last: bool) -> ShardSampler:
        return ShardSampler(
            self.kind, shard.num_rows, self.batch_size, self.seed, drop_last=drop_last,
            text_ids=shard.text_ids() if self.kind is BatchSamplers.NO_DUPLICATES else None,
            labels=shard.label_array() if self.kind is BatchSamplers.GROUP_BY_LABEL else None,
            stream=self.stream, lengths=shard.text_lengths() if self.group_by_length else None,
        )

    def _cut(self, window: pa.Table, epoch: int, index: int, final: bool
             ) -> tuple[Shard, list[np.ndarray], pa.Table | None]:
        """The batches a window hands out now, and the rows it carries over (None for the last window)."""
        shard = Shard(window, self.input_columns, self.label_column)
        self.peak_window_rows = max(self.peak_window_rows, shard.num_rows)
        rng = epoch_rng(self.seed, epoch, 1 + index, *self.stream)
        try:
            batches = self._sampler(shard, drop_last=False).one_pass(rng)
        except ValueError:
            if not final and self.kind is BatchSamplers.GROUP_BY_LABEL:
                if window.num_rows > 4 * self.window_rows:
                    raise ValueError(
                        f"batch_sampler='group_by_label': {window.num_rows} streamed rows in a row hold fewer than 2 "
                        f"labels with 2 rows each; raise streaming_window (now {self.window_rows}) or shuffle the data"
                    ) from None
                return shard, [], window  # fewer than 2 labels in the window so far: keep collecting
            if self.kind is BatchSamplers.GROUP_BY_LABEL:
                logger.debug("stream %s: the last %d rows hold fewer than 2 labels; left out", self.stream, shard.num_rows)
                return shard, [], None
            raise
        full = [b for b in batches if len(b) == self.batch_size]
        if final:
            return shard, (full if self.drop_last else batches), None
        handed = full or batches  # a window without a full batch still makes progress
        used = np.zeros(shard.num_rows, dtype=bool)
        if handed:
            used[np.concatenate(handed)] = True
        rest = np.flatnonzero(~used)
        if self.kind is BatchSamplers.GROUP_BY_LABEL and len(rest) > self.window_rows // 2:
            # the surplus of the most frequent labels: the in-memory sampler leaves it out of the epoch too
            rest = np.sort(rng.choice(rest, self.window_rows // 2, replace=False))
        carry = window.take(pa.array(rest)) if len(rest) else None
        return shard, handed, carry


# ---------------------------------------------------------------------- the driver's choice
class ParquetFiles:
    """Parquet files streamed by this process (in-process training): read block by block, never whole."""

    def __init__(self, paths: list[str]) -> None:
        from raycross.data.arrow_rows import ParquetRows

        self.paths = list(paths)
        self.rows = ParquetRows(self.paths)

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    def head(self, n: int = 1) -> pa.Table:
        return self.rows.read(0, min(n, self.rows.num_rows))


def parquet_paths(data: Any) -> list[str] | None:
    """The files of a parquet path / directory / list of paths, or None for anything else."""
    from raycross.data import data_files, file_format, is_paths

    if not is_paths(data):
        return None
    paths = data_files(data)
    return paths if file_format(paths) == "parquet" else None


def estimated_bytes(data: Any, num_rows: int | None = None, sample_row: dict[str, Any] | None = None) -> int:
    """The in-memory size of a dataset, estimated without reading it (parquet metadata, file sizes, or
    rows x the size of a sample row)."""
    import os

    paths = parquet_paths(data)
    if paths is not None:
        from raycross.data.arrow_rows import ParquetRows

        return ParquetRows(paths).num_bytes
    from raycross.data import data_files, is_paths

    files = data_files(data) if is_paths(data) else None
    if files:
        return 2 * sum(os.path.getsize(p) for p in files if os.path.exists(p))
    if num_rows is not None and sample_row is not None:
        row = sum(len(str(v)) + 8 for v in sample_row.values())
        return int(num_rows) * row
    return 0


def choose_streaming(setting: bool | None, data: Any, lazy: bool, world_size: int, num_rows: int | None = None,
                     sample_row: dict[str, Any] | None = None) -> bool:
    """Whether a training dataset streams: as forced, else when it is lazy (data files or a Ray Dataset)
    and larger than :data:`STREAM_AUTO_BYTES` per worker. In-memory data (and memory-mapped HF datasets)
    is batched from memory.

    Example:
        >>> choose_streaming(None, {"q": ["a"], "label": [1]}, lazy=False, world_size=1)
        False
    """
    if setting is not None:
        return bool(setting)
    if not lazy:
        return False
    return estimated_bytes(data, num_rows, sample_row) > STREAM_AUTO_BYTES * max(1, world_size)
