"""Filtering and sampling of negative candidates for a block of queries (vectorized numpy).

Semantics follow sentence-transformers' `mine_hard_negatives`: positives (by corpus id, i.e. by text, the
corpus being deduplicated) are removed unless include_positives; then absolute_margin
(drop ``score + margin > min positive``), relative_margin (drop ``score > p - |p| * margin`` with p the
smallest positive score: sign-safe), max_score (drop ``score > max_score``), min_score (drop
``score < min_score``); the survivors are ranked by score, the first range_min skipped, and
num_negatives taken from the top or sampled at random among ranks [range_min, range_max).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raycross.mining.options import MiningOptions

FILTERS = ("absolute_margin", "relative_margin", "max_score", "min_score")


@dataclass
class Selection:
    """Negatives chosen for a block of queries: ids (-1 when missing) and scores (-inf when missing),
    sorted by score, plus per-query counts of candidates dropped by each filter (columns: FILTERS)."""

    neg_ids: np.ndarray  # (n, num_negatives) int64
    neg_scores: np.ndarray  # (n, num_negatives) float64
    skipped: np.ndarray  # (n, 4) int64


def _uniform_keys(seed: int, query_ids: np.ndarray, width: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) for (seed, query id, position): splitmix64, independent of batching."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            query_ids.astype(np.uint64)[:, None] * np.uint64(0xBF58476D1CE4E5B9)
            + np.arange(width, dtype=np.uint64)[None, :]
        )
        for _ in range(2):
            x = x + np.uint64(0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def select_negatives(
    query_ids: np.ndarray,
    cand_ids: np.ndarray,
    cand_scores: np.ndarray,
    pos_ids: np.ndarray,
    pos_scores: np.ndarray,
    opts: MiningOptions,
) -> Selection:
    """Apply the filters and the sampling strategy to candidates of a block of queries.

    Args:
        query_ids: (n,) query ids (seed the random sampling, so results do not depend on batching).
        cand_ids, cand_scores: (n, k) retrieved corpus ids (-1 = none) and their scores.
        pos_ids, pos_scores: (n, p) positive corpus ids padded with -1 and their scores (NaN padding).

    Example:
        >>> opts = MiningOptions.create(num_negatives=1, range_max=3)
        >>> sel = select_negatives(np.array([0]), np.array([[5, 7, 9]]), np.array([[0.9, 0.8, 0.1]]),
        ...                        np.array([[5]]), np.array([[0.9]]), opts)
        >>> sel.neg_ids.tolist(), sel.neg_scores.tolist()
        ([[7]], [[0.8]])
    """
    n, k = cand_ids.shape
    scores = np.array(cand_scores, dtype=np.float64, copy=True)
    scores[cand_ids < 0] = -np.inf
    if not opts.include_positives:
        is_pos = (cand_ids[:, :, None] == pos_ids[:, None, :]).any(axis=2) & (cand_ids >= 0)
        scores[is_pos] = -np.inf
    skipped = np.zeros((n, len(FILTERS)), dtype=np.int64)

    def drop(column: int, mask: np.ndarray) -> None:
        mask &= np.isfinite(scores)
        skipped[:, column] = mask.sum(axis=1)
        scores[mask] = -np.inf

    if opts.has_margin:
        # The smallest (hardest) positive score bounds the negatives, as in the anchor.
        min_pos = np.nanmin(np.asarray(pos_scores, dtype=np.float64), axis=1)[:, None]
        if opts.absolute_margin is not None:
            drop(0, scores + opts.absolute_margin > min_pos)
        if opts.relative_margin is not None:
            drop(1, scores > min_pos - np.abs(min_pos) * opts.relative_margin)
    if opts.max_score is not None:
        drop(2, scores > opts.max_score)
    if opts.min_score is not None:
        drop(3, scores < opts.min_score)

    # Rank survivors by score, equal scores by corpus id (deterministic); dropped ones sink to the end.
    order = np.lexsort((cand_ids, -scores), axis=1)
    ranked_ids = np.take_along_axis(cand_ids, order, axis=1)
    ranked_scores = np.take_along_axis(scores, order, axis=1)
    window_end = min(int(opts.range_max), k)
    ranked_ids = ranked_ids[:, opts.range_min : window_end]
    ranked_scores = ranked_scores[:, opts.range_min : window_end]
    width = ranked_ids.shape[1]
    m = opts.num_negatives

    if opts.sampling_strategy == "random" and width > m:
        # Sample m of the valid candidates (all of them when fewer than m are valid), then sort by score.
        options = np.maximum(np.isfinite(ranked_scores).sum(axis=1), m)[:, None]
        keys = _uniform_keys(opts.seed, query_ids, width)
        keys[np.arange(width)[None, :] >= options] = np.inf
        picked = np.sort(np.argsort(keys, axis=1, kind="stable")[:, :m], axis=1)
        ranked_ids = np.take_along_axis(ranked_ids, picked, axis=1)
        ranked_scores = np.take_along_axis(ranked_scores, picked, axis=1)
        resort = np.argsort(-ranked_scores, axis=1, kind="stable")
        ranked_ids = np.take_along_axis(ranked_ids, resort, axis=1)
        ranked_scores = np.take_along_axis(ranked_scores, resort, axis=1)

    neg_ids = np.full((n, m), -1, dtype=np.int64)
    neg_scores = np.full((n, m), -np.inf, dtype=np.float64)
    take = min(m, width)
    neg_ids[:, :take] = ranked_ids[:, :take]
    neg_scores[:, :take] = ranked_scores[:, :take]
    neg_ids[~np.isfinite(neg_scores)] = -1
    return Selection(neg_ids, neg_scores, skipped)
