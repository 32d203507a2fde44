"""Per-block work shared by the local and the Ray runners: search a block of queries, optionally rescore
its candidates with a cross-encoder (one batched call across the block's queries), select negatives, and
collect the compact per-query results on the driver."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raycross.mining.index import Searcher, positive_scores
from raycross.mining.inputs import MiningInputs, padded_rows
from raycross.mining.options import MiningOptions
from raycross.mining.select import FILTERS, select_negatives


@dataclass
class BlockContext:
    """What every search/rescore worker needs: options, retrieval depth and the query -> positives map.

    Example:
        >>> ctx = BlockContext.create(inputs, opts)  # doctest: +SKIP
    """

    opts: MiningOptions
    depth: int
    pos_width: int
    pos_indptr: np.ndarray
    pos_ids: np.ndarray

    @classmethod
    def create(cls, inputs: MiningInputs, opts: MiningOptions) -> BlockContext:
        return cls(
            opts,
            opts.retrieval_depth(inputs.max_positives),
            inputs.max_unique_positives,
            inputs.pos_indptr,
            inputs.pos_ids,
        )

    def positives(self, q_ids: np.ndarray) -> np.ndarray:
        return padded_rows(self.pos_indptr, self.pos_ids, q_ids, self.pos_width)


def search_block(ctx: BlockContext, searcher: Searcher, q_ids: np.ndarray, q_emb: np.ndarray) -> dict[str, np.ndarray]:
    """Top candidates and positive scores of a block of queries (rows ordered by query id)."""
    order = np.argsort(q_ids, kind="stable")
    q_ids = np.asarray(q_ids)[order]
    q_emb = np.ascontiguousarray(np.asarray(q_emb)[order], dtype=np.float32)
    cand_ids, cand_scores = searcher.search(q_emb, ctx.depth)
    pos_ids = ctx.positives(q_ids)
    return {
        "id": np.asarray(q_ids, dtype=np.int64),
        "cand_ids": cand_ids,
        "cand_scores": cand_scores,
        "pos_ids": pos_ids,
        "pos_scores": positive_scores(q_emb, searcher.corpus, pos_ids),
    }


def rescore_block(
    ctx: BlockContext,
    cross_encoder: Any,
    queries: pa.Array,
    corpus: pa.Array,
    block: dict[str, np.ndarray],
    batch_size: int,
) -> dict[str, np.ndarray]:
    """Replace candidate and positive scores with cross-encoder scores, in one `predict` over the block.

    Only pairs whose score can matter are scored: positives (needed for margins) and retrieved
    non-positive candidates (positive candidates too when include_positives).
    """
    q_ids, cand_ids, pos_ids = block["id"], block["cand_ids"], block["pos_ids"]
    is_pos = (cand_ids[:, :, None] == pos_ids[:, None, :]).any(axis=2)
    cand_mask = (cand_ids >= 0) & (~is_pos | ctx.opts.include_positives)
    pos_mask = pos_ids >= 0
    rows_c, cols_c = np.nonzero(cand_mask)
    rows_p, cols_p = np.nonzero(pos_mask)
    query_idx = np.concatenate([q_ids[rows_c], q_ids[rows_p]])
    doc_idx = np.concatenate([cand_ids[rows_c, cols_c], pos_ids[rows_p, cols_p]])
    q_texts = queries.take(pa.array(query_idx, pa.int64())).to_pylist()
    d_texts = corpus.take(pa.array(doc_idx, pa.int64())).to_pylist()
    scores = np.asarray(
        cross_encoder.predict(list(zip(q_texts, d_texts)), batch_size=batch_size, show_progress_bar=False),
        dtype=np.float64,
    )
    if scores.shape != (len(q_texts),):
        raise ValueError(
            f"cross_encoder: expected one score per pair (shape ({len(q_texts)},)), found {scores.shape}; use a 1-label model"
        )
    cand_scores = np.full(cand_ids.shape, -np.inf, dtype=np.float64)
    cand_scores[rows_c, cols_c] = scores[: len(rows_c)]
    pos_scores = np.full(pos_ids.shape, np.nan, dtype=np.float64)
    pos_scores[rows_p, cols_p] = scores[len(rows_c) :]
    if ctx.opts.include_positives:
        # Positive candidates got their score above; keep the pair score identical to the positive's.
        hit_r, hit_c = np.nonzero(is_pos & (cand_ids >= 0))
        match = (cand_ids[hit_r, hit_c][:, None] == pos_ids[hit_r]).argmax(axis=1)
        cand_scores[hit_r, hit_c] = pos_scores[hit_r, match]
    return {**block, "cand_scores": cand_scores, "pos_scores": pos_scores}


def finish_block(ctx: BlockContext, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Select negatives; returns the compact per-query result (no texts)."""
    sel = select_negatives(
        block["id"], block["cand_ids"], block["cand_scores"], block["pos_ids"], block["pos_scores"], ctx.opts
    )
    return {
        "id": block["id"],
        "neg_ids": sel.neg_ids,
        "neg_scores": sel.neg_scores,
        "pos_scores": np.asarray(block["pos_scores"], dtype=np.float64),
        "skipped": sel.skipped,
    }


class ResultCollector:
    """Gathers compact block results into per-query arrays on the driver (O(queries x num_negatives))."""

    def __init__(self, inputs: MiningInputs, opts: MiningOptions) -> None:
        q, m = inputs.num_queries, opts.num_negatives
        self.inputs = inputs
        self.neg_ids = np.full((q, m), -1, dtype=np.int64)
        self.neg_scores = np.full((q, m), -np.inf, dtype=np.float64)
        self.pos_scores = np.full(inputs.num_pairs, np.nan, dtype=np.float64)
        self.skipped = np.zeros(len(FILTERS), dtype=np.int64)
        self.seen = np.zeros(q, dtype=bool)

    def add(self, result: dict[str, np.ndarray]) -> None:
        ids = np.asarray(result["id"], dtype=np.int64)
        self.neg_ids[ids] = result["neg_ids"]
        self.neg_scores[ids] = result["neg_scores"]
        counts = np.diff(self.inputs.pos_indptr)[ids]
        pos = np.asarray(result["pos_scores"])
        mask = np.arange(pos.shape[1])[None, :] < counts[:, None]
        flat = (self.inputs.pos_indptr[ids][:, None] + np.arange(pos.shape[1])[None, :])[mask]
        self.pos_scores[flat] = pos[mask]
        self.skipped += np.asarray(result["skipped"]).sum(axis=0)
        self.seen[ids] = True

    def check_complete(self) -> None:
        if not self.seen.all():
            raise RuntimeError(f"mining lost {int((~self.seen).sum())} queries between stages")


def worker_threads(num_workers: int, pools: int = 1) -> int:
    """Threads per worker so that concurrently running pools do not oversubscribe this node's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, num_workers * pools))
