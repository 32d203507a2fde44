"""Batch samplers over one worker's shard, and the multi-dataset schedule shared by all workers.

Everything here is vectorized numpy over row indices: no Python loop over rows. A sampler produces
the batches of one epoch; :func:`fixed_epoch_batches` stretches or cuts them to an agreed count so
every worker takes the same number of steps (no hang on uneven shards), and the same seed gives the
same batches again (resume from a checkpoint).

Example:
    >>> rng = np.random.default_rng(0)
    >>> [len(b) for b in shuffled_batches(10, 4, rng, drop_last=False)]
    [4, 4, 2]
    >>> dataset_schedule("round_robin", [3, 2], seed=0, epoch=0).tolist()
    [0, 1, 0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from raycross.training.arguments import BatchSamplers, MultiDatasetBatchSamplers


# ---------------------------------------------------------------------- seeding
def epoch_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    """A generator determined by (seed, epoch, stream...): the same on every rerun."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), *[int(s) for s in stream]])


# ---------------------------------------------------------------------- plain batches
def shuffled_batches(n_rows: int, batch_size: int, rng: np.random.Generator, drop_last: bool) -> list[np.ndarray]:
    """A random permutation of ``range(n_rows)`` cut into batches."""
    order = rng.permutation(n_rows)
    return _chunk(order, batch_size, drop_last)


def _chunk(order: np.ndarray, batch_size: int, drop_last: bool, min_last: int = 1) -> list[np.ndarray]:
    n_full = len(order) // batch_size
    batches = list(order[: n_full * batch_size].reshape(n_full, batch_size)) if n_full else []
    rest = order[n_full * batch_size :]
    if not drop_last and len(rest) >= min_last:
        batches.append(rest)
    return batches


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, drop_last: bool, megabatch_mult: int = 50
) -> list[np.ndarray]:
    """Shuffled batches of similar lengths (less padding): a random permutation is cut into megabatches
    of ``megabatch_mult * batch_size`` rows, each sorted by length and cut into batches; the batch order
    is shuffled, with the longest batch first (an out-of-memory error shows up at the first step), as
    the transformers ``group_by_length`` sampler does.
    """
    order = rng.permutation(len(lengths))
    size = megabatch_mult * batch_size
    grouped = [mega[np.argsort(-lengths[mega], kind="stable")] for mega in np.array_split(order, max(1, -(-len(order) // size)))]
    batches = [b for mega in grouped for b in _chunk(mega, batch_size, drop_last=False)]
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    if not batches:
        return batches
    longest = int(np.argmax([lengths[b].max() for b in batches]))
    rest = [batches[i] for i in rng.permutation(len(batches)) if i != longest]
    return [batches[longest], *rest]


# ---------------------------------------------------------------------- no duplicates
class TextIds:
    """Every row's texts as integer ids (equal texts share an id, across all input columns): a CSR layout.

    Example:
        >>> ids = TextIds.from_columns([["a", "b", "c"], ["x", "a", "y"]])
        >>> int(ids.row(0)[0]) == int(ids.row(1)[1])  # "a" in row 0 (column 0) and row 1 (column 1)
        True
    """

    def __init__(self, row_ptr: np.ndarray, ids: np.ndarray) -> None:
        self.row_ptr = row_ptr
        self.ids = ids

    @property
    def num_rows(self) -> int:
        return len(self.row_ptr) - 1

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.row_ptr[i] : self.row_ptr[i + 1]]

    @classmethod
    def from_columns(cls, columns: Sequence) -> TextIds:
        """Build from input columns (lists or pyarrow arrays of texts, or of lists of texts)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        pieces, owners = [], []
        n_rows = None
        for column in columns:
            array = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column)
            if isinstance(array, pa.ChunkedArray):
                array = array.combine_chunks()
            n_rows = len(array) if n_rows is None else n_rows
            if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
                lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)
                pieces.append(pc.list_flatten(array).cast(pa.large_string()))
                owners.append(np.repeat(np.arange(len(array)), lengths))
            else:
                pieces.append(array.cast(pa.large_string()))
                owners.append(np.arange(len(array)))
        n_rows = n_rows or 0
        if not pieces:
            return cls(np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        texts = pa.chunked_array(pieces, type=pa.large_string())
        encoded = pc.dictionary_encode(texts).combine_chunks()
        ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")
        counts = np.bincount(owner, minlength=n_rows)
        row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(row_ptr, ids[order])

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `rows`, text id) for every text of the given rows."""
        starts = self.row_ptr[rows]
        lengths = self.row_ptr[rows + 1] - starts
        total = int(lengths.sum())
        positions = np.repeat(np.arange(len(rows)), lengths)
        offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return positions, self.ids[np.repeat(starts, lengths) + offsets]


def _conflict_free(text_ids: TextIds, candidates: np.ndarray) -> np.ndarray:
    """Mask of candidates none of whose texts occurs in an earlier candidate (vectorized)."""
    positions, ids = text_ids.gather(candidates)
    if len(ids) == 0:
        return np.ones(len(candidates), dtype=bool)
    # a text repeated inside one row does not conflict with itself
    width = len(candidates)
    keys = np.unique(ids * width + positions)  # sorted by (id, position)
    ids, positions = keys // width, keys % width
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    blocked = np.zeros(len(candidates), dtype=bool)
    blocked[positions[~first]] = True
    return ~blocked


def no_duplicate_batches(
    text_ids: TextIds, batch_size: int, rng: np.random.Generator, drop_last: bool
) -> list[np.ndarray]:
    """Shuffled batches in which no text occurs twice (across all input columns).

    Rows that would repeat a text in the current batch are deferred to the next batches (they keep
    priority). The loop runs once per batch over a small window of candidates, never over rows.
    """
    order = rng.permutation(text_ids.num_rows)
    batches: list[np.ndarray] = []
    deferred = np.zeros(0, dtype=np.int64)
    cursor = 0
    n = len(order)
    while cursor < n or len(deferred):
        window = max(batch_size + batch_size // 2 + 4 - len(deferred), batch_size // 4 + 1)
        while True:
            fresh = order[cursor : cursor + window]
            candidates = np.concatenate([deferred, fresh])
            accepted = np.flatnonzero(_conflict_free(text_ids, candidates))
            if len(accepted) >= batch_size or cursor + window >= n:
                break
            window *= 2
        take = accepted[:batch_size]
        keep = np.ones(len(candidates), dtype=bool)
        keep[take] = False
        cursor += len(fresh)
        deferred = candidates[keep]
        if len(take) < batch_size and cursor >= n and drop_last:
            break
        batches.append(candidates[take])
    return batches


# ---------------------------------------------------------------------- group by label
def label_groups(labels: np.ndarray) -> np.ndarray:
    """Group id per row (equal labels share an id)."""
    _, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return inverse.reshape(-1)


def group_by_label_batches(
    groups: np.ndarray, batch_size: int, rng: np.random.Generator, drop_last: bool
) -> list[np.ndarray]:
    """Batches of 2-row pairs from at least 2 labels each (round robin over labels, 2 rows per turn).

    Labels with fewer than 2 rows are skipped; the stream stops when fewer than 2 labels are left,
    as in sentence-transformers' GroupByLabelBatchSampler.
    """
    if batch_size < 4 or batch_size % 2:
        raise ValueError(f"batch_size: group_by_label needs an even batch size >= 4, found {batch_size}")
    counts = np.bincount(groups)
    pairs_per_group = counts // 2
    usable = np.sort(pairs_per_group[pairs_per_group > 0])[::-1]
    if len(usable) < 2:
        raise ValueError(
            "group_by_label needs at least 2 distinct labels with at least 2 rows each, "
            f"found {len(usable)} such label(s)"
        )
    cap = usable[1]  # the round at which fewer than 2 labels would remain
    # shuffle within each label, then number the rows of each label 0, 1, 2, ...
    order = np.lexsort((rng.random(len(groups)), groups))
    g = groups[order]
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    rank = np.arange(len(order)) - starts[g]
    round_ = rank // 2
    keep = (rank < 2 * pairs_per_group[g]) & (round_ < cap)
    order, g, rank, round_ = order[keep], g[keep], rank[keep], round_[keep]
    if batch_size == 4:
        # With 2 pairs per batch a round boundary could pair one label with itself: a fixed label
        # order per epoch makes the last label of a round differ from the first of the next one.
        turn = rng.permutation(len(counts))[g].astype(np.float64)
    else:
        # a fresh random label order in every round (one key per (round, label))
        turn = rng.random(int(cap) * len(counts)).reshape(int(cap), len(counts))[round_, g]
    stream = order[np.lexsort((rank, turn, round_))]
    return _chunk(stream, batch_size, drop_last, min_last=4)


def group_by_label_num_batches(groups: np.ndarray, batch_size: int, drop_last: bool) -> int:
    """Number of batches :func:`group_by_label_batches` yields per epoch."""
    pairs = np.sort(np.bincount(groups) // 2)[::-1]
    pairs = pairs[pairs > 0]
    if len(pairs) < 2:
        return 0
    stream = 2 * int(np.minimum(pairs, pairs[1]).sum())
    n = stream // batch_size
    if not drop_last and stream % batch_size >= 4:
        n += 1
    return n


# ---------------------------------------------------------------------- one dataset's sampler
class ShardSampler:
    """Produces one epoch of batches (arrays of row indices) of one dataset shard.

    Example:
        >>> sampler = ShardSampler("batch_sampler", num_rows=10, batch_size=4, seed=1)
        >>> sampler.natural_num_batches()
        3
        >>> [len(b) for b in fixed_epoch_batches(sampler, epoch=0, num_batches=5)]
        [4, 4, 2, 4, 4]
    """

    def __init__(
        self,
        kind: BatchSamplers | str,
        num_rows: int,
        batch_size: int,
        seed: int,
        drop_last: bool = False,
        text_ids: TextIds | None = None,
        labels: np.ndarray | None = None,
        stream: tuple[int, ...] = (),
        lengths: np.ndarray | None = None,
    ) -> None:
        self.kind = BatchSamplers.parse(kind, "batch_sampler")
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.stream = stream
        if self.kind is BatchSamplers.NO_DUPLICATES and text_ids is None:
            raise ValueError("batch_sampler='no_duplicates' needs the text ids of the shard")
        if self.kind is BatchSamplers.GROUP_BY_LABEL:
            if labels is None:
                raise ValueError("batch_sampler='group_by_label' needs a label column")
            self.groups = label_groups(labels)
        self.text_ids = text_ids
        if lengths is not None and self.kind is not BatchSamplers.BATCH_SAMPLER:
            raise ValueError(f"group_by_length works with batch_sampler='batch_sampler' only, found {self.kind.value!r}")
        self.lengths = lengths

    def natural_num_batches(self) -> int:
        """Batches in one pass over the shard (what a plain epoch would give)."""
        if self.kind is BatchSamplers.GROUP_BY_LABEL:
            return group_by_label_num_batches(self.groups, self.batch_size, self.drop_last)
        full, rest = divmod(self.num_rows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def one_pass(self, rng: np.random.Generator) -> list[np.ndarray]:
        if self.kind is BatchSamplers.NO_DUPLICATES:
            return no_duplicate_batches(self.text_ids, self.batch_size, rng, self.drop_last)
        if self.kind is BatchSamplers.GROUP_BY_LABEL:
            return group_by_label_batches(self.groups, self.batch_size, rng, self.drop_last)
        if self.lengths is not None:
            return length_grouped_batches(self.lengths, self.batch_size, rng, self.drop_last)
        return shuffled_batches(self.num_rows, self.batch_size, rng, self.drop_last)


def fixed_epoch_batches(sampler: ShardSampler, epoch: int, num_batches: int) -> list[np.ndarray]:
    """Exactly `num_batches` batches for `epoch`: extra passes (reshuffled) fill up, the rest is cut."""
    batches: list[np.ndarray] = []
    for attempt in range(max(1, num_batches) + 1):
        if len(batches) >= num_batches:
            break
        produced = sampler.one_pass(epoch_rng(sampler.seed, epoch, attempt, *sampler.stream))
        if not produced:
            raise ValueError(
                f"batch sampler {sampler.kind.value!r} produced no batch from a shard of {sampler.num_rows} rows "
                f"with batch size {sampler.batch_size}"
            )
        batches.extend(produced)
    return batches[:num_batches]


# ---------------------------------------------------------------------- multi-dataset schedule
def dataset_schedule(
    kind: MultiDatasetBatchSamplers | str, num_batches: Sequence[int], seed: int, epoch: int
) -> np.ndarray:
    """Which dataset each step of the epoch draws its batch from; identical on every worker.

    ``proportional``: every batch of every dataset once, in a seeded random order.
    ``round_robin``: datasets take turns until the smallest one runs out.

    Example:
        >>> np.bincount(dataset_schedule("proportional", [6, 2], seed=3, epoch=0)).tolist()
        [6, 2]
    """
    kind = MultiDatasetBatchSamplers.parse(kind, "multi_dataset_batch_sampler")
    counts = np.asarray(num_batches, dtype=np.int64)
    if len(counts) == 1:
        return np.zeros(int(counts[0]), dtype=np.int64)
    if kind is MultiDatasetBatchSamplers.ROUND_ROBIN:
        return np.tile(np.arange(len(counts)), int(counts.min()))
    schedule = np.repeat(np.arange(len(counts)), counts)
    # no worker rank in the seed: every worker must pick the same dataset at every step
    return epoch_rng(seed, epoch, 7919).permutation(schedule)


def steps_per_epoch(kind: MultiDatasetBatchSamplers | str, num_batches: Sequence[int]) -> int:
    """Length of :func:`dataset_schedule` without building it."""
    kind = MultiDatasetBatchSamplers.parse(kind, "multi_dataset_batch_sampler")
    if len(num_batches) > 1 and kind is MultiDatasetBatchSamplers.ROUND_ROBIN:
        return int(min(num_batches)) * len(num_batches)
    return int(sum(num_batches))


def updates_per_epoch(micro_batches: int, gradient_accumulation_steps: int) -> int:
    """Optimizer steps per epoch: a trailing group smaller than the accumulation still makes a step."""
    return max(1, math.ceil(micro_batches / gradient_accumulation_steps))
