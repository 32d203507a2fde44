"""Metric math of raycross.evaluation.metrics against hand-computed values and independent references."""

from __future__ import annotations

import collections
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from raycross.evaluation.metrics import (
    average_precision,
    best_accuracy_and_threshold,
    best_f1_and_threshold,
    binary_average_precision,
    f1_scores,
    ndcg,
    pearson,
    rankdata,
    ranking_metrics,
    reciprocal_rank,
    spearman,
)

# ------------------------------------------------------------------ independent references (no ties)


def ref_ap(ranked_relevant: list[bool], total_relevant: int) -> float:
    hits, total = 0, 0.0
    for position, relevant in enumerate(ranked_relevant, start=1):
        if relevant:
            hits += 1
            total += hits / position
    return total / total_relevant if total_relevant else 0.0


def ref_rr(ranked_relevant: list[bool], k: int) -> float:
    for position, relevant in enumerate(ranked_relevant[:k], start=1):
        if relevant:
            return 1.0 / position
    return 0.0


def ref_ndcg(ranked_gains: list[float], all_gains: list[float], k: int) -> float:
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(ranked_gains[:k]))
    ideal = sorted(all_gains, reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def tie_orders(scores: list[float]):
    """Every ranking consistent with the scores (ties in any order)."""
    groups = [[i for i, s in enumerate(scores) if s == value] for value in sorted(set(scores), reverse=True)]
    for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for group in choice for i in group]


def expected_over_ties(gains, scores, k, missed=()):
    values = []
    for order in tie_orders(list(scores)):
        ranked = [gains[i] for i in order]
        total = sum(1 for g in gains if g > 0) + sum(1 for g in missed if g > 0)
        values.append((
            ref_ap([g > 0 for g in ranked], total),
            ref_rr([g > 0 for g in ranked], k),
            ref_ndcg(ranked, list(gains) + list(missed), k),
        ))
    return np.mean(values, axis=0)


# ------------------------------------------------------------------ hand-computed cases


def test_hand_computed_binary_ranking():
    gains = [0, 1, 0, 1, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]  # relevant at ranks 2 and 4
    assert average_precision(gains, scores) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert reciprocal_rank(gains, scores, k=10) == pytest.approx(0.5)
    assert reciprocal_rank(gains, scores, k=1) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg(gains, scores, k=10) == pytest.approx(dcg / idcg)
    assert ndcg(gains, scores, k=2) == pytest.approx((1 / math.log2(3)) / idcg)
    # Input order does not matter, only scores.
    perm = [3, 0, 4, 1, 2]
    assert ranking_metrics([gains[i] for i in perm], [scores[i] for i in perm], k=10) == pytest.approx(
        ranking_metrics(gains, scores, k=10)
    )


def test_hand_computed_ties():
    # Relevant tied with one irrelevant at the top: ranks 1 or 2 with equal probability.
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx((1 + 1 / 2) / 2)
    assert reciprocal_rank([1, 0], [0.5, 0.5]) == pytest.approx((1 + 1 / 2) / 2)
    assert ndcg([1, 0], [0.5, 0.5]) == pytest.approx((1 + 1 / math.log2(3)) / 2)
    # Everything tied, 1 relevant of 3: E[1/rank] = (1 + 1/2 + 1/3) / 3.
    assert reciprocal_rank([0, 1, 0], [1, 1, 1]) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    # ... with k=2 the third position counts 0.
    assert reciprocal_rank([0, 1, 0], [1, 1, 1], k=2) == pytest.approx((1 + 1 / 2) / 3)
    # Two relevant of three all tied: orders RRN, RNR, NRR (each twice): AP = 1, (1+2/3)/2, (1/2+2/3)/2.
    assert average_precision([1, 1, 0], [2, 2, 2]) == pytest.approx((1 + 5 / 6 + 7 / 12) / 3)


def test_hand_computed_graded_gains_and_missed_positives():
    gains = [3, 0, 1]
    scores = [0.2, 0.9, 0.5]  # ranked gains: 0, 1, 3
    dcg = 0 + 1 / math.log2(3) + 3 / math.log2(4)
    idcg = 3 + 1 / math.log2(3)
    assert ndcg(gains, scores) == pytest.approx(dcg / idcg)
    # A missed positive with gain 2 enters the ideal DCG only.
    idcg_missed = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg(gains, scores, missed_gains=[2]) == pytest.approx(dcg / idcg_missed)
    # AP and MRR use gain > 0: relevant at ranks 2 and 3, one more missed.
    assert average_precision(gains, scores) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert average_precision(gains, scores, num_missed=1) == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert ranking_metrics(gains, scores, k=10, missed_gains=[2]) == pytest.approx(
        ((1 / 2 + 2 / 3) / 3, 1 / 2, dcg / idcg_missed)
    )


def test_degenerate_inputs():
    assert ranking_metrics([0, 0], [0.3, 0.1], k=10) == (0.0, 0.0, 0.0)
    # Nothing retrieved, positives missed: 0 (not NaN).
    assert ranking_metrics([0, 0], [0.3, 0.1], k=10, missed_gains=[1]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        ndcg([1, 0], [0.5])
    with pytest.raises(ValueError, match="finite"):
        reciprocal_rank([1, 0], [np.nan, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        ndcg([-1, 0], [0.5, 0.1])
    with pytest.raises(ValueError, match="`k`"):
        ndcg([1, 0], [0.5, 0.1], k=0)


@pytest.mark.parametrize("seed", range(12))
def test_ties_equal_expectation_over_all_tie_orders(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 8))
    gains = rng.choice([0, 0, 1, 2, 3], size=n).astype(float)
    scores = rng.integers(0, 3, size=n).astype(float)  # few distinct values: many ties
    missed = [2.0] if seed % 3 == 0 else []
    k = int(rng.integers(1, n + 1))
    expected = expected_over_ties(gains, scores, k, missed)
    got = ranking_metrics(gains, scores, k=k, missed_gains=missed)
    assert got == pytest.approx(tuple(expected), abs=1e-12)


# ------------------------------------------------------------------ real data: WordNet candidates


def test_ranking_metrics_on_wordnet_match_loop_references(shared_data):
    import pyarrow.parquet as pq

    root = shared_data / "wordnet-context2gloss"
    qrels = collections.defaultdict(set)
    table = pq.read_table(root / "qrels.parquet").to_pydict()
    for query_id, corpus_id in zip(table["query-id"], table["corpus-id"]):
        qrels[query_id].add(corpus_id)
    candidates = pq.read_table(root / "candidates.parquet").to_pydict()
    rng = np.random.default_rng(0)
    got, want = [], []
    for query_id, ids in list(zip(candidates["query-id"], candidates["candidates"]))[:1500]:
        scores = rng.normal(size=len(ids))
        gains = [1.0 if doc in qrels[query_id] else 0.0 for doc in ids]
        order = np.argsort(-scores)
        ranked = [gains[i] for i in order]
        want.append((ref_ap([g > 0 for g in ranked], sum(g > 0 for g in gains)),
                     ref_rr([g > 0 for g in ranked], 5), ref_ndcg(ranked, gains, 5)))
        got.append(ranking_metrics(gains, scores, k=5))
    np.testing.assert_allclose(np.mean(got, axis=0), np.mean(want, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ classification


def brute_force_accuracy(scores, labels):
    candidates = [np.inf, *np.unique(scores)]
    return max(np.mean((scores >= t) == labels) for t in candidates)


def brute_force_f1(scores, labels):
    best = 0.0
    for t in np.unique(scores):
        predicted = scores >= t
        tp = np.sum(predicted & (labels == 1))
        if tp:
            precision, recall = tp / predicted.sum(), tp / labels.sum()
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def test_binary_thresholds_hand_computed():
    assert best_accuracy_and_threshold([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0]) == (1.0, pytest.approx(0.55))
    f1, precision, recall, threshold = best_f1_and_threshold([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    assert (f1, precision, recall) == pytest.approx((0.8, 2 / 3, 1.0))
    assert threshold == pytest.approx(0.2)
    # All negatives is best when the scores are inverted.
    accuracy, threshold = best_accuracy_and_threshold([0.1, 0.2], [1, 0])
    assert accuracy == 0.5 and threshold > 0.2
    assert best_f1_and_threshold([0.1, 0.2], [0, 0]) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="0 or 1"):
        best_accuracy_and_threshold([0.1, 0.2], [0, 2])


def test_binary_metrics_on_snli_against_brute_force(shared_data):
    import pyarrow.parquet as pq

    labels_text = pq.read_table(shared_data / "snli" / "test.parquet", columns=["label"]).column("label").to_pylist()
    labels = np.array([1 if label == "entailment" else 0 for label in labels_text[:2000]])
    rng = np.random.default_rng(1)
    scores = np.round(labels * 0.3 + rng.random(len(labels)), 2)  # rounded: many ties
    accuracy, threshold = best_accuracy_and_threshold(scores, labels)
    assert accuracy == pytest.approx(brute_force_accuracy(scores, labels))
    assert np.mean((scores >= threshold) == labels) == pytest.approx(accuracy)
    f1, precision, recall, f1_threshold = best_f1_and_threshold(scores, labels)
    assert f1 == pytest.approx(brute_force_f1(scores, labels))
    predicted = scores >= f1_threshold
    tp = np.sum(predicted & (labels == 1))
    assert precision == pytest.approx(tp / predicted.sum()) and recall == pytest.approx(tp / labels.sum())
    # AP without ties equals the textbook sum of precision at each positive.
    continuous = labels * 0.3 + rng.random(len(labels))
    order = np.argsort(-continuous)
    assert binary_average_precision(labels, continuous) == pytest.approx(
        ref_ap(list(labels[order] == 1), int(labels.sum()))
    )


def test_f1_scores_against_confusion_matrix_reference(shared_data):
    import pyarrow.parquet as pq

    names = pq.read_table(shared_data / "snli" / "test.parquet", columns=["label"]).column("label").to_pylist()
    mapping = {"contradiction": 0, "entailment": 1, "neutral": 2}
    labels = np.array([mapping[n] for n in names[:3000]])
    rng = np.random.default_rng(2)
    predictions = np.where(rng.random(len(labels)) < 0.6, labels, rng.integers(0, 3, len(labels)))
    per_class, supports = [], []
    for c in range(3):
        tp = np.sum((predictions == c) & (labels == c))
        precision = tp / np.sum(predictions == c)
        recall = tp / np.sum(labels == c)
        per_class.append(2 * precision * recall / (precision + recall))
        supports.append(np.sum(labels == c))
    got = f1_scores(labels, predictions)
    assert got["f1_macro"] == pytest.approx(np.mean(per_class))
    assert got["f1_weighted"] == pytest.approx(np.average(per_class, weights=supports))
    assert got["f1_micro"] == pytest.approx(np.mean(predictions == labels))
    # A class never predicted nor present does not count; one predicted but absent counts with F1 0.
    assert f1_scores([0, 0, 1], [0, 0, 2]) == pytest.approx(
        {"f1_macro": (1 + 0 + 0) / 3, "f1_micro": 2 / 3, "f1_weighted": (2 * 1 + 1 * 0) / 3}
    )


# ------------------------------------------------------------------ correlation


def test_correlations_on_snli_graded_match_scipy(shared_data):
    import pyarrow.parquet as pq

    gold = np.array(pq.read_table(shared_data / "snli" / "test-graded.parquet", columns=["score"]).column("score"))
    rng = np.random.default_rng(3)
    predicted = gold + rng.normal(scale=0.3, size=len(gold))
    assert pearson(gold, predicted) == pytest.approx(scipy.stats.pearsonr(gold, predicted)[0], abs=1e-12)
    # Gold scores take few values: Spearman must use average ranks for the many ties.
    assert spearman(gold, predicted) == pytest.approx(scipy.stats.spearmanr(gold, predicted)[0], abs=1e-12)
    np.testing.assert_allclose(rankdata(gold), scipy.stats.rankdata(gold))
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
