"""Reading (anchor, positive) pairs and a corpus into deduplicated Arrow text arrays and index arrays.

Texts stay in Arrow (C++ buffers), never in Python lists: queries and corpus are deduplicated by exact
text in first-occurrence order, as the anchor does, and positives become a CSR map query -> corpus ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raycross.data import column_names, to_arrow


@dataclass
class MiningInputs:
    """Deduplicated texts and the query -> positives map of a mining run.

    Example:
        >>> inputs = prepare_inputs({"q": ["a", "a", "b"], "p": ["x", "y", "x"]})
        >>> inputs.queries.to_pylist(), inputs.corpus.to_pylist(), inputs.positives_of(0).tolist()
        (['a', 'b'], ['x', 'y'], [0, 1])
    """

    anchor_column: str
    positive_column: str
    queries: pa.LargeStringArray  # unique queries, first-occurrence order
    corpus: pa.LargeStringArray  # unique corpus texts (corpus then positives), first-occurrence order
    pos_indptr: np.ndarray  # (n_queries + 1,) int64: positives of query q are pos_ids[indptr[q]:indptr[q+1]]
    pos_ids: np.ndarray  # (n_pairs,) int64 corpus ids, unique per query, in order of appearance
    num_rows: int  # rows of the input dataset
    max_positives: int  # most dataset rows for one query (duplicates included, as the anchor)
    mean_positives: float

    @property
    def num_queries(self) -> int:
        return len(self.queries)

    @property
    def num_pairs(self) -> int:
        return len(self.pos_ids)

    def positives_of(self, q: int) -> np.ndarray:
        return self.pos_ids[self.pos_indptr[q] : self.pos_indptr[q + 1]]

    def pair_queries(self) -> np.ndarray:
        """Query id of each (query, positive) pair, aligned with pos_ids."""
        return np.repeat(np.arange(self.num_queries, dtype=np.int64), np.diff(self.pos_indptr))

    @property
    def max_unique_positives(self) -> int:
        return int(np.diff(self.pos_indptr).max())

    def padded_positives(self, q_ids: np.ndarray, width: int | None = None) -> np.ndarray:
        """(len(q_ids), width) corpus ids of the given queries' positives, padded with -1."""
        return padded_rows(self.pos_indptr, self.pos_ids, q_ids, width or self.max_unique_positives)


def padded_rows(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """Rows of a CSR map as a (len(rows), width) int64 matrix padded with -1."""
    counts = np.diff(indptr)[rows]
    out = np.full((len(rows), max(width, 1)), -1, dtype=np.int64)
    cols = np.arange(out.shape[1])
    mask = cols[None, :] < counts[:, None]
    starts = indptr[rows]
    out[mask] = values[(starts[:, None] + cols[None, :])[mask]]
    return out


def _as_text(name: str, column: pa.ChunkedArray | pa.Array) -> pa.LargeStringArray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.large_string())
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise TypeError(f"column {name!r}: expected strings, found {column.type}")
    if column.null_count:
        raise ValueError(f"column {name!r}: expected strings, found {column.null_count} null value(s)")
    return column.cast(pa.large_string())


def _dedup(texts: pa.LargeStringArray) -> tuple[pa.LargeStringArray, np.ndarray]:
    """Unique texts in first-occurrence order and, for each input text, its index among them."""
    encoded = pc.dictionary_encode(texts)
    return encoded.dictionary.cast(pa.large_string()), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def corpus_to_arrow(corpus: Any) -> pa.LargeStringArray:
    """A user corpus (list of str, numpy/Arrow array, pandas Series, HF Dataset column) as a large_string array."""
    if isinstance(corpus, (pa.Array, pa.ChunkedArray)):
        return _as_text("corpus", corpus)
    if isinstance(corpus, str) or not hasattr(corpus, "__iter__"):
        raise TypeError(f"corpus: expected a sequence of strings, found {type(corpus).__name__}")
    values = list(corpus)
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise TypeError(f"corpus[{bad}]: expected str, found {type(values[bad]).__name__}")
    return pa.array(values, type=pa.large_string())


def prepare_inputs(
    dataset: Any,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: Any = None,
) -> MiningInputs:
    """Pick the anchor/positive columns (default: the first two), check them and deduplicate.

    The corpus is the separate corpus (if any) followed by the positives, deduplicated, as in the anchor.
    """
    columns = column_names(dataset)
    if anchor_column_name is None:
        if not columns:
            raise ValueError("dataset: expected at least two columns (anchor, positive), found none")
        anchor_column_name = columns[0]
    elif anchor_column_name not in columns:
        raise ValueError(
            f"anchor_column_name={anchor_column_name!r} is not a column of the dataset; columns: {columns}"
        )
    if positive_column_name is None:
        if len(columns) < 2:
            raise ValueError(f"dataset: expected at least two columns (anchor, positive), found {columns}")
        positive_column_name = columns[1]
    elif positive_column_name not in columns:
        raise ValueError(
            f"positive_column_name={positive_column_name!r} is not a column of the dataset; columns: {columns}"
        )
    if anchor_column_name == positive_column_name:
        raise ValueError(f"anchor_column_name and positive_column_name are both {anchor_column_name!r}")

    table = to_arrow(dataset, columns=[anchor_column_name, positive_column_name])
    if table.num_rows == 0:
        raise ValueError("dataset: expected at least one (anchor, positive) row, found an empty dataset")
    anchors = _as_text(anchor_column_name, table.column(0))
    positives = _as_text(positive_column_name, table.column(1))

    queries, row_query = _dedup(anchors)
    extra = corpus_to_arrow(corpus) if corpus is not None else pa.array([], pa.large_string())
    corpus_texts, all_ids = _dedup(pa.concat_arrays([extra, positives]))
    row_pos = all_ids[len(extra) :]

    # Unique (query, positive) pairs in order of first appearance, grouped by query.
    keys = np.stack([row_query, row_pos], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    first = np.sort(first)
    order = first[np.argsort(row_query[first], kind="stable")]
    pos_ids = row_pos[order]
    counts = np.bincount(row_query[order], minlength=len(queries))
    indptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    rows_per_query = np.bincount(row_query, minlength=len(queries))
    return MiningInputs(
        anchor_column=anchor_column_name,
        positive_column=positive_column_name,
        queries=queries,
        corpus=corpus_texts,
        pos_indptr=indptr,
        pos_ids=pos_ids.astype(np.int64),
        num_rows=len(anchors),
        max_positives=int(rows_per_query.max()),
        mean_positives=float(rows_per_query.mean()),
    )
