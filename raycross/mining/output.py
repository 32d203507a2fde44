"""Rows of the mined dataset in the anchor's formats, built with Arrow `take` in bounded chunks of queries
(never the whole output as Python lists), then collected into an HF Dataset or streamed to parquet.

Formats (column names as the anchor; `a`/`p` are the anchor and positive column names):
- triplet: a, p, "negative" [, "scores" = [pos, neg]] - one row per (query, positive, negative)
- n-tuple: a, p, "negative_1".."negative_n" [, "scores"] - per (query, positive) with all n negatives
- labeled-pair: a, p (any document), "label" 1/0 (or "score") - per query: its positives then its negatives
- labeled-list: a, p ([positive, negatives...]), "labels" (or "scores") - per (query, positive) with >= 1 negative
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from raycross.mining.inputs import MiningInputs
from raycross.mining.options import MiningOptions


def output_schema(inputs: MiningInputs, opts: MiningOptions) -> pa.Schema:
    """Arrow schema of the mined dataset."""
    a, p = inputs.anchor_column, inputs.positive_column
    text, floats = pa.string(), pa.list_(pa.float64())
    fmt = opts.output_format
    if fmt == "triplet":
        fields = [(a, text), (p, text), ("negative", text)] + ([("scores", floats)] if opts.output_scores else [])
    elif fmt == "n-tuple":
        fields = [(a, text), (p, text)] + [(f"negative_{i}", text) for i in range(1, opts.num_negatives + 1)]
        fields += [("scores", floats)] if opts.output_scores else []
    elif fmt == "labeled-pair":
        fields = [(a, text), (p, text), ("score", pa.float64()) if opts.output_scores else ("label", pa.int64())]
    else:
        fields = [
            (a, text),
            (p, pa.list_(text)),
            ("scores", floats) if opts.output_scores else ("labels", pa.list_(pa.int64())),
        ]
    return pa.schema(fields)


def _texts(array: pa.LargeStringArray, ids: np.ndarray) -> pa.Array:
    return array.take(pa.array(ids, pa.int64())).cast(pa.string())


def _lists(values: pa.Array | np.ndarray, lengths: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = values if isinstance(values, pa.Array) else pa.array(values, value_type)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def iter_output_batches(
    inputs: MiningInputs,
    neg_ids: np.ndarray,
    neg_scores: np.ndarray,
    pos_scores: np.ndarray,
    opts: MiningOptions,
    chunk_queries: int = 8192,
) -> Iterator[pa.RecordBatch]:
    """Yield the mined rows in anchor order, `chunk_queries` queries at a time.

    Args:
        neg_ids, neg_scores: (Q, num_negatives) per unique query, -1 / -inf where missing.
        pos_scores: (n_pairs,) score of each (query, positive) pair in the inputs' CSR order.

    Example:
        >>> table = pa.Table.from_batches(list(iter_output_batches(inputs, ids, scores, pos, opts)))  # doctest: +SKIP
    """
    schema = output_schema(inputs, opts)
    q_all, c_all, indptr = inputs.queries, inputs.corpus, inputs.pos_indptr
    pair_q_all = inputs.pair_queries()
    m, fmt = opts.num_negatives, opts.output_format
    for a in range(0, inputs.num_queries, chunk_queries):
        b = min(inputs.num_queries, a + chunk_queries)
        p0, p1 = int(indptr[a]), int(indptr[b])
        pq, pid, ps = pair_q_all[p0:p1], inputs.pos_ids[p0:p1], pos_scores[p0:p1].astype(np.float64)
        ids, sc = neg_ids[pq], neg_scores[pq].astype(np.float64)
        finite = np.isfinite(sc)
        if fmt == "triplet":
            r, j = np.nonzero(finite)
            cols = [_texts(q_all, pq[r]), _texts(c_all, pid[r]), _texts(c_all, ids[r, j])]
            if opts.output_scores:
                cols.append(_lists(np.stack([ps[r], sc[r, j]], axis=1).ravel(), np.full(len(r), 2), pa.float64()))
        elif fmt == "n-tuple":
            keep = finite.all(axis=1)
            cols = [_texts(q_all, pq[keep]), _texts(c_all, pid[keep])]
            cols += [_texts(c_all, ids[keep, i]) for i in range(m)]
            if opts.output_scores:
                vals = np.concatenate([ps[keep, None], sc[keep]], axis=1)
                cols.append(_lists(vals.ravel(), np.full(len(vals), m + 1), pa.float64()))
        elif fmt == "labeled-pair":
            # Per query: its positives (label 1) then its negatives (label 0), each negative once.
            qn, jn = np.nonzero(np.isfinite(neg_scores[a:b]))
            qn = qn + a
            q = np.concatenate([pq, qn])
            docs = np.concatenate([pid, neg_ids[qn, jn]])
            order = np.argsort(q * 2 + np.repeat([0, 1], [len(pq), len(qn)]), kind="stable")
            cols = [_texts(q_all, q[order]), _texts(c_all, docs[order])]
            if opts.output_scores:
                cols.append(pa.array(np.concatenate([ps, neg_scores[qn, jn].astype(np.float64)])[order], pa.float64()))
            else:
                cols.append(pa.array(np.repeat([1, 0], [len(pq), len(qn)])[order], pa.int64()))
        else:  # labeled-list
            keep = finite.any(axis=1)
            mask = np.concatenate([np.ones((int(keep.sum()), 1), bool), finite[keep]], axis=1)
            lengths = mask.sum(axis=1)
            doc_ids = np.concatenate([pid[keep, None], ids[keep]], axis=1)[mask]
            cols = [_texts(q_all, pq[keep]), _lists(_texts(c_all, doc_ids), lengths, pa.string())]
            if opts.output_scores:
                vals = np.concatenate([ps[keep, None], sc[keep]], axis=1)[mask]
                cols.append(_lists(vals, lengths, pa.float64()))
            else:
                labels = np.concatenate(
                    [np.ones((len(lengths), 1), np.int64), np.zeros((len(lengths), m), np.int64)], axis=1
                )[mask]
                cols.append(_lists(labels, lengths, pa.int64()))
        yield pa.RecordBatch.from_arrays(cols, schema=schema)


def to_hf_dataset(batches: Iterator[pa.RecordBatch], schema: pa.Schema):
    """Collect Arrow batches into an in-memory HF `datasets.Dataset` (Arrow buffers, no Python lists)."""
    import datasets

    return datasets.Dataset(pa.Table.from_batches(list(batches), schema=schema))


MINED_MARKER = ".raycross-mined.json"
"""Written last into a mining output directory: the files of a complete run."""


def write_parquet(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, output_path: str | Path, rows_per_file: int = 1_000_000
) -> list[str]:
    """Stream Arrow batches to ``output_path/part-00000.parquet``...; returns the written file paths.

    A marker written last (:data:`MINED_MARKER`) tells a complete output from one a killed run left behind.
    """
    import json

    import pyarrow.parquet as pq

    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(out.glob("part-*.parquet"))
    if stale:
        raise ValueError(
            f"output_path={str(out)!r} already holds {len(stale)} part-*.parquet file(s); pass an empty directory"
        )
    files: list[str] = []
    writer, rows_in_file = None, 0
    try:
        for batch in batches:
            if writer is None or rows_in_file >= rows_per_file:
                if writer is not None:
                    writer.close()
                files.append(str(out / f"part-{len(files):05d}.parquet"))
                writer, rows_in_file = pq.ParquetWriter(files[-1], schema, compression="zstd"), 0
            writer.write_batch(batch)
            rows_in_file += batch.num_rows
        if writer is None:  # no rows at all: still write a file with the schema
            files.append(str(out / "part-00000.parquet"))
            writer = pq.ParquetWriter(files[-1], schema, compression="zstd")
    finally:
        if writer is not None:
            writer.close()
    marker = out / MINED_MARKER
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"files": [Path(f).name for f in files], "columns": schema.names}), encoding="utf8")
    os.replace(tmp, marker)
    return files


def mined_output_complete(output_path: str | Path) -> bool:
    """Whether `output_path` holds the whole output of a finished ``mine_hard_negatives(output_path=...)``.

    Example:
        >>> mined_output_complete("no/such/dir")
        False
    """
    marker = Path(output_path) / MINED_MARKER
    if not marker.is_file():
        return False
    import json

    files = json.loads(marker.read_text(encoding="utf8")).get("files", [])
    return all((Path(output_path) / name).is_file() for name in files)
