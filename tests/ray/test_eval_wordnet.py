"""Reranking WordNet context-to-definition candidates with the real MiniLM weights (random head):
base vs reranked metrics against loop references, and the same numbers from a Ray Data actor pool
and from sharded scoring."""

from __future__ import annotations

import collections
import itertools
import math

import numpy as np
import pytest

from raycross.evaluation import (
    CrossEncoderRerankingEvaluator,
    RayPairScorer,
    evaluate_sharded,
    predict_scorer,
    score_pairs_with_ray,
    shard_range,
)

NUM_QUERIES = 80
AT_K = 10


@pytest.fixture(scope="module")
def wordnet_samples(shared_data):
    import pyarrow.parquet as pq

    root = shared_data / "wordnet-context2gloss"
    corpus_table = pq.read_table(root / "corpus.parquet").to_pydict()
    corpus = dict(zip(corpus_table["_id"], corpus_table["text"]))
    query_table = pq.read_table(root / "queries.parquet").to_pydict()
    queries = dict(zip(query_table["_id"], query_table["text"]))
    qrels = collections.defaultdict(list)
    qrel_table = pq.read_table(root / "qrels.parquet").to_pydict()
    for query_id, corpus_id in zip(qrel_table["query-id"], qrel_table["corpus-id"]):
        qrels[query_id].append(corpus_id)
    candidates = pq.read_table(root / "candidates.parquet").to_pydict()
    rows = list(zip(candidates["query-id"], candidates["candidates"]))
    picked = np.random.default_rng(0).choice(len(rows), size=NUM_QUERIES, replace=False)
    samples = []
    for i in sorted(picked):
        query_id, ids = rows[i]
        samples.append({
            "query": queries[query_id],
            "positive": [corpus[c] for c in qrels[query_id]],
            "documents": [corpus[c] for c in ids],
        })
    return samples


@pytest.fixture(scope="module")
def minilm_model(minilm_dir):
    import torch

    from raycross import CrossEncoder

    torch.manual_seed(0)  # the classification head on top of MiniLM is freshly initialized
    return CrossEncoder(str(minilm_dir), device="cpu")


class RecordingScorer:
    """Scores with model.predict and keeps the scores and pairs for the reference computation."""

    def __init__(self):
        self.pairs, self.scores = None, None

    def __call__(self, model, pairs, batch_size=32, show_progress_bar=None):
        self.pairs = list(pairs)
        self.scores = predict_scorer(model, pairs, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return self.scores


@pytest.fixture(scope="module")
def single_process(wordnet_samples, minilm_model):
    recorder = RecordingScorer()
    evaluator = CrossEncoderRerankingEvaluator(
        wordnet_samples, at_k=AT_K, name="wordnet", batch_size=64, write_csv=False, scorer=recorder
    )
    return evaluator, evaluator(minilm_model), recorder


def tie_orders(scores):
    """Every ranking consistent with the scores (tied candidates in any order)."""
    groups = [[i for i, s in enumerate(scores) if s == value] for value in sorted(set(scores), reverse=True)]
    for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for group in choice for i in group]


def reference_metrics(gains_in_rank_order):
    relevant = [g > 0 for g in gains_in_rank_order]
    hits, ap = 0, 0.0
    for position, rel in enumerate(relevant, start=1):
        if rel:
            hits += 1
            ap += hits / position
    rr = next((1 / p for p, rel in enumerate(relevant[:AT_K], start=1) if rel), 0.0)
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains_in_rank_order[:AT_K]))
    ideal = sorted(gains_in_rank_order, reverse=True)[:AT_K]
    return ap / hits, rr, dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def test_wordnet_base_and_reranked_match_references(wordnet_samples, single_process):
    evaluator, results, recorder = single_process
    assert evaluator.primary_metric == "wordnet_ndcg@10"
    # One batched pass over all pairs of all queries.
    assert len(recorder.pairs) == sum(len(s["documents"]) for s in wordnet_samples)
    base, reranked, offset = [], [], 0
    for sample in wordnet_samples:
        positives = set(sample["positive"])
        base.append(reference_metrics([1.0 if d in positives else 0.0 for d in sample["documents"]]))
        # The evaluator scores the positives first, then the other candidates.
        docs = sample["positive"] + [d for d in sample["documents"] if d not in positives]
        assert recorder.pairs[offset : offset + len(docs)] == [(sample["query"], d) for d in docs]
        scores = recorder.scores[offset : offset + len(docs)]
        offset += len(docs)
        gains = [1.0 if d in positives else 0.0 for d in docs]
        # float32 sigmoid scores do tie: average the reference over every order of the tied candidates.
        orders = list(tie_orders(scores.tolist()))
        assert len(orders) <= 1000
        reranked.append(np.mean([reference_metrics([gains[i] for i in order]) for order in orders], axis=0))
    base_map, base_mrr, base_ndcg = np.mean(base, axis=0)
    rer_map, rer_mrr, rer_ndcg = np.mean(reranked, axis=0)
    assert results["wordnet_base_map"] == pytest.approx(base_map, abs=1e-12)
    assert results["wordnet_base_mrr@10"] == pytest.approx(base_mrr, abs=1e-12)
    assert results["wordnet_base_ndcg@10"] == pytest.approx(base_ndcg, abs=1e-12)
    assert results["wordnet_map"] == pytest.approx(rer_map, abs=1e-12)
    assert results["wordnet_mrr@10"] == pytest.approx(rer_mrr, abs=1e-12)
    assert results["wordnet_ndcg@10"] == pytest.approx(rer_ndcg, abs=1e-12)
    # The README's reference point: the candidates' corpus order gives MRR@10 near 0.5 (random-like).
    assert 0.3 < results["wordnet_base_mrr@10"] < 0.7


def test_wordnet_ray_actor_pool_gives_the_same_numbers(ray_session, wordnet_samples, minilm_model, single_process):
    _, _, recorder = single_process
    ray_scorer = RayPairScorer(num_actors=2, num_cpus_per_actor=0.5, rows_per_task=64)
    seen = {}

    def recording_ray_scorer(model, pairs, batch_size=32, show_progress_bar=None):
        seen["scores"] = ray_scorer(model, pairs, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return seen["scores"]

    ray_evaluator = CrossEncoderRerankingEvaluator(
        wordnet_samples[:40], at_k=AT_K, name="wordnet", batch_size=32, write_csv=False, scorer=recording_ray_scorer
    )
    ray_results = ray_evaluator(minilm_model)
    # The first queries' pairs are a prefix of the full list: compare with their single-process scores.
    num_pairs = ray_evaluator.num_pairs()
    assert ray_evaluator.pairs() == recorder.pairs[:num_pairs]
    single_results = ray_evaluator.compute_metrics(recorder.scores[:num_pairs])
    # Scores from several actor batches (rows_per_task=64), back in input order.
    assert num_pairs > 4 * 64
    np.testing.assert_allclose(seen["scores"], recorder.scores[:num_pairs], atol=1e-5)
    assert ray_results.keys() == single_results.keys()
    for key, value in single_results.items():
        assert ray_results[key] == pytest.approx(value, abs=1e-6), key


def test_score_pairs_with_ray_from_a_saved_model_path(ray_session, minilm_model, single_process, tmp_path):
    _, _, recorder = single_process
    minilm_model.save_pretrained(tmp_path / "model")
    scores = score_pairs_with_ray(str(tmp_path / "model"), recorder.pairs[:40], batch_size=8, num_actors=1,
                                  num_cpus_per_actor=0.5, rows_per_task=16)
    np.testing.assert_allclose(scores, recorder.scores[:40], atol=1e-5)


def test_wordnet_sharded_scoring_gives_the_same_numbers(wordnet_samples, minilm_model, single_process):
    _, _, recorder = single_process
    subset = wordnet_samples[:40]
    sharded = CrossEncoderRerankingEvaluator(subset, at_k=AT_K, name="wordnet", batch_size=64, write_csv=False)
    pairs = sharded.pairs()
    # The pairs of the first queries are a prefix of the full list: their single-process scores are known.
    assert pairs == recorder.pairs[: len(pairs)]
    single_results = sharded.compute_metrics(recorder.scores[: len(pairs)])
    world_size = 2
    bounds = [shard_range(len(pairs), rank, world_size) for rank in range(world_size)]
    scored = {}

    def shard_scorer(model, shard, batch_size=32, show_progress_bar=None):
        # Each shard is scored once, by whichever simulated rank asks first.
        key = tuple(shard)
        if key not in scored:
            scored[key] = predict_scorer(model, shard, batch_size=batch_size)
        return scored[key]

    for rank in range(world_size):
        def all_gather(local, rank=rank):
            return [local if r == rank else shard_scorer(minilm_model, pairs[s:e]) for r, (s, e) in enumerate(bounds)]

        results = evaluate_sharded(
            sharded, minilm_model, rank=rank, world_size=world_size, all_gather=all_gather, scorer=shard_scorer
        )
        for key, value in single_results.items():
            assert results[key] == pytest.approx(value, abs=1e-6), key
    assert sorted(len(k) for k in scored) == sorted(e - s for s, e in bounds)
