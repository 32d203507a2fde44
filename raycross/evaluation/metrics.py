"""Pure metric math for the evaluators (numpy only; no sklearn, no scipy).

Ranking metrics (`average_precision`, `reciprocal_rank`, `ndcg`) take the gains of the candidates of one
query and the model's scores for them, in any order. They rank by score, descending.

Ties in the scores: every ranking metric returns its *expected value over a uniformly random order of
the tied items* (McSherry & Najork, "Computing information retrieval performance measures efficiently
in the presence of tied scores", ECIR 2008). So the result never depends on the order in which tied
candidates were given. For NDCG this is exactly sklearn's `ndcg_score` (tie-averaged gains), which
sentence-transformers uses; for AP and MRR it equals sklearn / sentence-transformers whenever the
scores have no ties (with ties, sklearn's AP groups tied items at the end of their group and
sentence-transformers' MRR takes `argsort`'s arbitrary order).

Gains: NDCG uses the gain as given (linear gain, as sklearn and trec_eval's `ndcg_cut`), discount
`1 / log2(rank + 1)`. AP and MRR treat every candidate with gain > 0 as relevant.

Missed positives: `num_missed` / `missed_gains` describe relevant documents that are not among the
candidates (a first stage did not retrieve them). They count in the denominators (AP's number of
relevant documents, NDCG's ideal DCG) but can never be ranked.

Example:
    >>> from raycross.evaluation.metrics import ndcg, reciprocal_rank
    >>> reciprocal_rank([0, 1, 0], [0.9, 0.5, 0.1])
    0.5
    >>> round(ndcg([0, 1, 0], [0.9, 0.5, 0.1], k=10), 4)
    0.6309
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "average_precision",
    "best_accuracy_and_threshold",
    "best_f1_and_threshold",
    "binary_average_precision",
    "f1_scores",
    "ndcg",
    "pearson",
    "rankdata",
    "ranking_metrics",
    "reciprocal_rank",
    "spearman",
]


# ----------------------------------------------------------------------------------------------
# Input checks and the ranking by score with its tie groups
# ----------------------------------------------------------------------------------------------


def _as_1d(values: Sequence[float] | np.ndarray, argument: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`{argument}` must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{argument}` must be finite numbers, found NaN or infinity")
    return array


def _gains_and_scores(gains: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    gains_array = _as_1d(gains, "gains")
    scores_array = _as_1d(scores, "scores")
    if gains_array.shape != scores_array.shape:
        raise ValueError(
            f"`gains` and `scores` must have the same length, got {len(gains_array)} and {len(scores_array)}"
        )
    if np.any(gains_array < 0):
        raise ValueError("`gains` must be >= 0, found a negative gain")
    return gains_array, scores_array


def _ranked_groups(gains: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by score, descending; return (gains in ranked order, group id per position, group starts)."""
    order = np.argsort(-scores, kind="stable")
    ranked_scores = scores[order]
    new_group = np.ones(len(ranked_scores), dtype=bool)
    new_group[1:] = ranked_scores[1:] != ranked_scores[:-1]
    group_of_position = np.cumsum(new_group) - 1
    group_starts = np.flatnonzero(new_group)
    return gains[order], group_of_position, group_starts


# ----------------------------------------------------------------------------------------------
# Ranking metrics of one query
# ----------------------------------------------------------------------------------------------


def average_precision(gains: Sequence[float], scores: Sequence[float], num_missed: int = 0) -> float:
    """Average precision of one ranked list (candidates with gain > 0 are relevant), tie-aware.

    `num_missed` relevant documents that are not candidates count in the denominator. Returns 0.0
    when nothing is relevant.

    Example:
        >>> average_precision([1, 0, 1], [0.9, 0.8, 0.1])  # (1/1 + 2/3) / 2
        0.8333333333333333
        >>> average_precision([1, 0], [0.5, 0.5])  # tie: the relevant one is first half of the time
        0.75
    """
    gain_array, score_array = _gains_and_scores(gains, scores)
    if num_missed < 0:
        raise ValueError(f"`num_missed` must be >= 0, got {num_missed}")
    relevant = (gain_array > 0).astype(np.float64)
    total_relevant = relevant.sum() + num_missed
    if total_relevant == 0 or relevant.sum() == 0:
        return 0.0
    ranked, group_of, starts = _ranked_groups(relevant, score_array)
    # Per group: size n, relevant r, items before c, relevant before a.
    sizes = np.diff(np.append(starts, len(ranked)))
    rel_per_group = np.add.reduceat(ranked, starts)
    rel_before_group = np.cumsum(rel_per_group) - rel_per_group
    n, r, c, a = sizes[group_of], rel_per_group[group_of], starts[group_of], rel_before_group[group_of]
    j = np.arange(len(ranked)) - c + 1  # 1-based position inside the group
    # A relevant item at group position j has, in expectation, (j-1)(r-1)/(n-1) other relevant items of
    # its group ahead of it; it sits at each position with probability 1/n, and there are r of them.
    other_ahead = np.where(n > 1, (j - 1) * (r - 1) / np.maximum(n - 1, 1), 0.0)
    terms = (r / n) * (a + 1 + other_ahead) / (c + j)
    return float(terms.sum() / total_relevant)


def reciprocal_rank(gains: Sequence[float], scores: Sequence[float], k: int | None = None) -> float:
    """Reciprocal rank of the first relevant candidate (gain > 0), 0 beyond rank `k`; tie-aware.

    Example:
        >>> reciprocal_rank([0, 0, 1], [3.0, 2.0, 1.0])
        0.3333333333333333
        >>> reciprocal_rank([0, 0, 1], [3.0, 2.0, 1.0], k=2)
        0.0
    """
    gain_array, score_array = _gains_and_scores(gains, scores)
    _check_k(k)
    relevant = (gain_array > 0).astype(np.float64)
    if relevant.sum() == 0:
        return 0.0
    ranked, group_of, starts = _ranked_groups(relevant, score_array)
    first_group = group_of[np.flatnonzero(ranked)[0]]
    start = int(starts[first_group])
    end = int(starts[first_group + 1]) if first_group + 1 < len(starts) else len(ranked)
    n, r = end - start, int(ranked[start:end].sum())
    limit = len(ranked) if k is None else k
    # P(first relevant of the group at group position j) = C(n-j, r-1) / C(n, r), built iteratively.
    expected, probability = 0.0, r / n
    for j in range(1, n - r + 2):
        if start + j <= limit:
            expected += probability / (start + j)
        probability *= (n - j - r + 1) / (n - j) if n - j > 0 else 0.0
    return float(expected)


def ndcg(
    gains: Sequence[float],
    scores: Sequence[float],
    k: int | None = None,
    missed_gains: Sequence[float] = (),
) -> float:
    """Normalized DCG@k with linear gains and `1/log2(rank+1)` discount; tied items share their mean gain.

    `missed_gains` are gains of relevant documents that are not candidates: they enter the ideal DCG.
    Returns 0.0 when every gain is 0.

    Example:
        >>> round(ndcg([3, 2, 0], [0.1, 0.9, 0.5]), 4)  # graded gains
        0.8212
        >>> round(ndcg([1, 0], [0.5, 0.5]), 4)  # a tie averages the two positions
        0.8155
    """
    gain_array, score_array = _gains_and_scores(gains, scores)
    _check_k(k)
    missed = _as_1d(missed_gains, "missed_gains") if len(missed_gains) else np.zeros(0)
    if np.any(missed < 0):
        raise ValueError("`missed_gains` must be >= 0, found a negative gain")
    ideal = np.sort(np.concatenate([gain_array, missed]))[::-1]
    depth = len(ideal) if k is None else min(k, len(ideal))
    ideal_dcg = float(np.sum(ideal[:depth] / np.log2(np.arange(2, depth + 2))))
    if ideal_dcg == 0.0:
        return 0.0
    ranked, group_of, starts = _ranked_groups(gain_array, score_array)
    discounts = 1.0 / np.log2(np.arange(2, len(ranked) + 2))
    if k is not None:
        discounts[k:] = 0.0
    mean_gain = np.add.reduceat(ranked, starts) / np.diff(np.append(starts, len(ranked)))
    dcg = float(np.sum(mean_gain[group_of] * discounts))
    return dcg / ideal_dcg


def ranking_metrics(
    gains: Sequence[float],
    scores: Sequence[float],
    k: int,
    missed_gains: Sequence[float] = (),
) -> tuple[float, float, float]:
    """(average precision over the full list, MRR@k, NDCG@k) of one query.

    Example:
        >>> ranking_metrics([0, 1], [0.2, 0.7], k=10)
        (1.0, 1.0, 1.0)
    """
    num_missed = int(np.sum(np.asarray(missed_gains, dtype=np.float64) > 0)) if len(missed_gains) else 0
    return (
        average_precision(gains, scores, num_missed=num_missed),
        reciprocal_rank(gains, scores, k=k),
        ndcg(gains, scores, k=k, missed_gains=missed_gains),
    )


def _check_k(k: int | None) -> None:
    if k is not None and (not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"`k` must be a positive integer or None, got {k!r}")


# ----------------------------------------------------------------------------------------------
# Binary classification (one score per pair, labels 0/1)
# ----------------------------------------------------------------------------------------------


def _binary_inputs(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    score_array = _as_1d(scores, "scores")
    label_array = np.asarray(labels)
    if label_array.shape != score_array.shape:
        raise ValueError(
            f"`scores` and `labels` must have the same length, got {len(score_array)} and {len(label_array)}"
        )
    if not np.all(np.isin(label_array, (0, 1))):
        found = sorted({v.item() if hasattr(v, "item") else v for v in np.unique(label_array)})[:5]
        raise ValueError(f"`labels` must be 0 or 1 for one-score classification, found {found}")
    return score_array, label_array.astype(np.int64)


def _threshold_groups(scores: np.ndarray, labels: np.ndarray):
    """Sort by score descending; per distinct score: last position, tp, fp, the score and the next score."""
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_labels = scores[order], labels[order]
    tp = np.cumsum(ranked_labels)
    fp = np.arange(1, len(ranked_labels) + 1) - tp
    is_end = np.ones(len(ranked_scores), dtype=bool)
    is_end[:-1] = ranked_scores[1:] != ranked_scores[:-1]
    ends = np.flatnonzero(is_end)
    next_scores = np.append(ranked_scores[ends[:-1] + 1], np.nan)
    return ends, tp[ends], fp[ends], ranked_scores[ends], next_scores


def _midpoint(score: float, next_score: float) -> float:
    """Threshold between two score groups (`score >= t` predicts positive), or `score` for the last one."""
    if np.isnan(next_score):
        return float(score)
    middle = (score + next_score) / 2
    # A rounded midpoint must not fall onto the next (lower) score group.
    return float(score) if middle == next_score else float(middle)


def best_accuracy_and_threshold(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """Best accuracy of the rule `score >= threshold` -> positive, and that threshold.

    The candidates are "everything negative" and a cut between each pair of adjacent distinct scores
    (their midpoint); the first best cut from the top wins.

    Example:
        >>> best_accuracy_and_threshold([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0])
        (1.0, 0.55)
    """
    score_array, label_array = _binary_inputs(scores, labels)
    if len(score_array) == 0:
        raise ValueError("`scores` is empty")
    total = len(label_array)
    negatives = total - label_array.sum()
    ends, tp, fp, group_scores, next_scores = _threshold_groups(score_array, label_array)
    accuracies = np.concatenate([[negatives / total], (tp + (negatives - fp)) / total])
    best = int(np.argmax(accuracies))
    if best == 0:
        return float(accuracies[0]), float(np.nextafter(group_scores[0], np.inf))
    return float(accuracies[best]), _midpoint(group_scores[best - 1], next_scores[best - 1])


def best_f1_and_threshold(
    scores: Sequence[float], labels: Sequence[int]
) -> tuple[float, float, float, float]:
    """Best F1 of the rule `score >= threshold` -> positive: (f1, precision, recall, threshold).

    Returns zeros when there is no positive label.

    Example:
        >>> best_f1_and_threshold([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
        (0.8, 0.6666666666666666, 1.0, 0.2)
    """
    score_array, label_array = _binary_inputs(scores, labels)
    positives = int(label_array.sum())
    if positives == 0:
        return 0.0, 0.0, 0.0, 0.0
    ends, tp, fp, group_scores, next_scores = _threshold_groups(score_array, label_array)
    precision = tp / (tp + fp)
    recall = tp / positives
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    if f1[best] <= 0:
        return 0.0, 0.0, 0.0, 0.0
    threshold = _midpoint(group_scores[best], next_scores[best])
    return float(f1[best]), float(precision[best]), float(recall[best]), threshold


def binary_average_precision(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Average precision of scores against 0/1 labels (the area under the precision-recall steps).

    Tie-aware like `average_precision`; equals sklearn's `average_precision_score` without ties.

    Example:
        >>> binary_average_precision([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1])
        0.8333333333333333
    """
    score_array, label_array = _binary_inputs(scores, labels)
    return average_precision(label_array, score_array)


# ----------------------------------------------------------------------------------------------
# Multi-class F1 (sklearn's definitions: labels = union of true and predicted, zero_division=0)
# ----------------------------------------------------------------------------------------------


def f1_scores(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """Macro, micro and weighted F1 of predicted class ids against true class ids.

    Example:
        >>> f1_scores([0, 1, 2, 2], [0, 2, 2, 2])
        {'f1_macro': 0.6, 'f1_micro': 0.75, 'f1_weighted': 0.65}
    """
    true = np.asarray(labels)
    pred = np.asarray(predictions)
    if true.ndim != 1 or true.shape != pred.shape:
        raise ValueError(
            f"`labels` and `predictions` must be 1-D of the same length, got shapes {true.shape} and {pred.shape}"
        )
    if len(true) == 0:
        raise ValueError("`labels` is empty")
    classes = np.union1d(true, pred)
    tp = np.array([np.sum((true == c) & (pred == c)) for c in classes], dtype=np.float64)
    fp = np.array([np.sum((true != c) & (pred == c)) for c in classes], dtype=np.float64)
    fn = np.array([np.sum((true == c) & (pred != c)) for c in classes], dtype=np.float64)
    support = tp + fn
    denominator = 2 * tp + fp + fn
    per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    micro_denominator = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "f1_macro": float(per_class.mean()),
        "f1_micro": float(2 * tp.sum() / micro_denominator) if micro_denominator > 0 else 0.0,
        "f1_weighted": float(np.sum(per_class * support) / support.sum()) if support.sum() > 0 else 0.0,
    }


# ----------------------------------------------------------------------------------------------
# Correlation
# ----------------------------------------------------------------------------------------------


def rankdata(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, tied values get the mean of their ranks (scipy's `rankdata(method="average")`).

    Example:
        >>> rankdata([10, 20, 10, 30]).tolist()
        [1.5, 3.0, 1.5, 4.0]
    """
    array = _as_1d(values, "values")
    order = np.argsort(array, kind="stable")
    sorted_values = array[order]
    new_group = np.ones(len(array), dtype=bool)
    new_group[1:] = sorted_values[1:] != sorted_values[:-1]
    group_of = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], len(array))
    mean_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(array), dtype=np.float64)
    ranks[order] = mean_rank[group_of]
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN when either input is constant.

    Example:
        >>> pearson([1, 2, 3], [2, 4, 7])
        0.9933992677987828
    """
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"`x` and `y` must have the same length, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"correlation needs at least 2 values, got {len(a)}")
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if norm == 0:
        return float("nan")
    return float(np.clip(np.dot(a, b) / norm, -1.0, 1.0))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when either input is constant.

    Example:
        >>> spearman([1, 2, 3], [2, 4, 7])
        1.0
    """
    return pearson(rankdata(x), rankdata(y))
