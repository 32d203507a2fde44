"""Evaluators: keys, primary metrics, CSV files, input validation, NanoBEIR from a local directory,
and the pairs() / compute_metrics() contract used for sharded evaluation (no Ray here)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross.evaluation import (
    CrossEncoderClassificationEvaluator,
    CrossEncoderCorrelationEvaluator,
    CrossEncoderNanoBEIREvaluator,
    CrossEncoderRerankingEvaluator,
    SequentialEvaluator,
    evaluate_sharded,
    shard_range,
)

LOG3 = 1 / math.log2(3)


class TableModel:
    """A stand-in CrossEncoder: scores come from a {(text_a, text_b): score} table (default 0)."""

    def __init__(self, table=None, num_labels=1, fn=None):
        self.table = table or {}
        self.num_labels = num_labels
        self.fn = fn
        self.model_card_data = {}
        self.calls = []

    def predict(self, pairs, batch_size=32, show_progress_bar=None, convert_to_numpy=True):
        self.calls.append((len(pairs), batch_size))
        if self.fn is not None:
            return np.asarray([self.fn(a, b) for a, b in pairs], dtype=np.float32)
        return np.asarray([self.table.get((a, b), 0.0) for a, b in pairs], dtype=np.float32)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# ------------------------------------------------------------------ classification


def test_classification_binary_keys_values_and_csv(tmp_path):
    pairs = [("a", "1"), ("a", "2"), ("a", "3"), ("a", "4")]
    model = TableModel({("a", "1"): 0.9, ("a", "2"): 0.8, ("a", "3"): 0.3, ("a", "4"): 0.1})
    evaluator = CrossEncoderClassificationEvaluator(pairs, [1, 0, 1, 0], name="dev")
    results = evaluator(model, output_path=str(tmp_path), epoch=1, steps=10)
    assert list(results) == [
        "dev_accuracy", "dev_accuracy_threshold", "dev_f1", "dev_f1_threshold",
        "dev_precision", "dev_recall", "dev_average_precision",
    ]
    assert evaluator.primary_metric == "dev_average_precision"
    # Ranked labels 1,0,1,0: best accuracy 0.75 (cut below the first), F1 0.8 (cut below the third).
    assert results["dev_accuracy"] == pytest.approx(0.75)
    assert results["dev_accuracy_threshold"] == pytest.approx(0.85)
    assert results["dev_f1"] == pytest.approx(0.8)
    assert results["dev_f1_threshold"] == pytest.approx(0.2)
    assert results["dev_average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    evaluator(model, output_path=str(tmp_path), epoch=2, steps=20)
    rows = read_csv(tmp_path / "CrossEncoderClassificationEvaluator_dev_results.csv")
    assert rows[0] == ["epoch", "steps", "Accuracy", "Accuracy_Threshold", "F1", "F1_Threshold",
                       "Precision", "Recall", "Average_Precision"]
    assert [r[:2] for r in rows[1:]] == [["1", "10"], ["2", "20"]]
    assert float(rows[1][-1]) == pytest.approx((1 + 2 / 3) / 2)
    # The model card data records the latest evaluation.
    (entry,) = model.model_card_data["eval_results"]
    assert entry["evaluator"] == "CrossEncoderClassificationEvaluator" and entry["step"] == 20


def test_classification_multiclass_with_tiny_model(tiny_model_path_3labels):
    from raycross import CrossEncoder

    model = CrossEncoder(str(tiny_model_path_3labels), device="cpu")
    pairs = [("a man is eating", f"someone eats food {i}") for i in range(12)]
    labels = [i % 3 for i in range(12)]
    evaluator = CrossEncoderClassificationEvaluator(pairs, labels, name="nli", batch_size=5, write_csv=False)
    results = evaluator(model)
    predicted = np.argmax(model.predict(pairs), axis=1)
    assert list(results) == ["nli_f1_macro", "nli_f1_micro", "nli_f1_weighted"]
    assert evaluator.primary_metric == "nli_f1_macro"
    assert results["nli_f1_micro"] == pytest.approx(np.mean(predicted == np.array(labels)))


def test_classification_errors():
    with pytest.raises(ValueError, match="same length"):
        CrossEncoderClassificationEvaluator([("a", "b"), ("c", "d")], [1])
    with pytest.raises(TypeError, match=r"sentence_pairs\[1\]"):
        CrossEncoderClassificationEvaluator([("a", "b"), ("c",)], [1, 0])
    evaluator = CrossEncoderClassificationEvaluator([("a", "b"), ("c", "d")], [0, 2])
    with pytest.raises(ValueError, match="0/1"):
        evaluator(TableModel())
    with pytest.raises(ValueError, match="3 outputs"):
        CrossEncoderClassificationEvaluator([("a", "b"), ("c", "d")], [0, 3]).compute_metrics(np.zeros((2, 3)))


# ------------------------------------------------------------------ correlation


def test_correlation_keys_and_csv(tmp_path):
    pairs = [("q", str(i)) for i in range(5)]
    gold = [0.1, 0.4, 0.2, 0.9, 0.5]
    model = TableModel(fn=lambda a, b: float(b) ** 2)  # monotone in the pair index
    evaluator = CrossEncoderCorrelationEvaluator(pairs, gold, name="sts")
    results = evaluator(model, output_path=str(tmp_path))
    assert evaluator.primary_metric == "sts_spearman"
    predicted = np.arange(5.0) ** 2
    assert results["sts_pearson"] == pytest.approx(np.corrcoef(gold, predicted)[0, 1])
    # Spearman from the rank formula 1 - 6 sum d^2 / (n (n^2 - 1)) (no ties).
    d = np.argsort(np.argsort(gold)) - np.arange(5)
    assert results["sts_spearman"] == pytest.approx(1 - 6 * np.sum(d**2) / (5 * 24))
    rows = read_csv(tmp_path / "CrossEncoderCorrelationEvaluator_sts_results.csv")
    assert rows[0] == ["epoch", "steps", "Pearson_Correlation", "Spearman_Correlation"]
    with pytest.raises(ValueError, match="same length"):
        CrossEncoderCorrelationEvaluator(pairs, gold[:3])
    with pytest.raises(ValueError, match="one score per pair"):
        evaluator.compute_metrics(np.zeros((5, 3)))


# ------------------------------------------------------------------ reranking


def rerank_model():
    # q1: the positive "p1" is scored highest; q2: "n2" beats the positive "p2".
    return TableModel({("q1", "p1"): 0.9, ("q1", "n1"): 0.2, ("q1", "m1"): 0.1,
                       ("q2", "p2"): 0.4, ("q2", "n2"): 0.8})


def test_reranking_negative_form():
    samples = [
        {"query": "q1", "positive": ["p1"], "negative": ["n1", "m1"]},
        {"query": "q2", "positive": "p2", "negative": ["n2"]},
    ]
    evaluator = CrossEncoderRerankingEvaluator(samples, name="dev", at_k=10)
    model = rerank_model()
    results = evaluator(model)
    assert evaluator.primary_metric == "dev_ndcg@10"
    assert results == pytest.approx({"dev_map": 0.75, "dev_mrr@10": 0.75, "dev_ndcg@10": (1 + LOG3) / 2})
    assert model.calls == [(5, 64)]  # all pairs of all queries in one predict call
    assert evaluator.pairs() == [("q1", "p1"), ("q1", "n1"), ("q1", "m1"), ("q2", "p2"), ("q2", "n2")]


def test_reranking_documents_form_base_metrics_and_csv(tmp_path):
    samples = [
        {"query": "q1", "positive": ["p1"], "documents": ["n1", "p1", "m1"]},  # base rank 2
        {"query": "q2", "positive": ["p2"], "documents": ["p2", "n2"]},  # base rank 1
    ]
    evaluator = CrossEncoderRerankingEvaluator(samples, name="wn", at_k=1)
    model = rerank_model()
    results = evaluator(model, output_path=str(tmp_path), epoch=0, steps=5)
    assert results == pytest.approx({
        "wn_map": 0.75, "wn_mrr@1": 0.5, "wn_ndcg@1": 0.5,
        "wn_base_map": 0.75, "wn_base_mrr@1": 0.5, "wn_base_ndcg@1": 0.5,
    })
    rows = read_csv(tmp_path / "CrossEncoderRerankingEvaluator_wn_results_@1.csv")
    assert rows == [["epoch", "steps", "MAP", "MRR@1", "NDCG@1"], ["0", "5", "0.75", "0.5", "0.5"]]
    (entry,) = model.model_card_data["eval_results"]
    assert entry["metrics"]["wn_map"] == "0.7500 (+0.0000)"


def test_reranking_missed_positives_both_modes():
    # The first stage found "p1" (rank 2) but missed "x1"; the model puts p1 first and, when it is
    # reranked, x1 second.
    samples = [{"query": "q1", "positive": ["p1", "x1"], "documents": ["n1", "p1"]}]
    model = TableModel({("q1", "p1"): 0.9, ("q1", "x1"): 0.5, ("q1", "n1"): 0.1})
    always = CrossEncoderRerankingEvaluator(samples, at_k=10)(model)
    # Reranked with every positive: p1, x1, n1 -> perfect.
    assert always["map"] == pytest.approx(1.0) and always["ndcg@10"] == pytest.approx(1.0)
    # Base as in sentence-transformers: n1, p1, then the missed x1 appended at rank 3.
    assert always["base_map"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert always["base_ndcg@10"] == pytest.approx((LOG3 + 0.5) / (1 + LOG3))
    realistic = CrossEncoderRerankingEvaluator(samples, at_k=10, always_rerank_positives=False)
    assert realistic.pairs() == [("q1", "n1"), ("q1", "p1")]
    results = realistic(model)
    # Reranked p1, n1; x1 never retrieved: AP = (1/1) / 2, NDCG = 1 / (1 + 1/log2 3).
    assert results["map"] == pytest.approx(0.5)
    assert results["mrr@10"] == pytest.approx(1.0)
    assert results["ndcg@10"] == pytest.approx(1 / (1 + LOG3))
    assert results["base_map"] == pytest.approx(0.25)
    assert results["base_ndcg@10"] == pytest.approx(LOG3 / (1 + LOG3))
    # A query whose positives were all missed scores 0 in both and is not scored at all.
    none_found = CrossEncoderRerankingEvaluator(
        [{"query": "q1", "positive": ["x1"], "documents": ["n1"]}], always_rerank_positives=False
    )
    assert none_found.pairs() == []
    assert none_found.compute_metrics([]) == {"map": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0,
                                              "base_map": 0.0, "base_mrr@10": 0.0, "base_ndcg@10": 0.0}


def test_reranking_graded_gains():
    samples = [{"query": "q", "positive": {"a": 3, "b": 1, "z": 0}, "negative": ["c"]}]
    model = TableModel({("q", "a"): 0.1, ("q", "b"): 0.9, ("q", "c"): 0.5, ("q", "z"): 0.7})
    evaluator = CrossEncoderRerankingEvaluator(samples, at_k=10)
    assert evaluator.pairs() == [("q", "a"), ("q", "b"), ("q", "c")]  # gain 0 is not a positive
    results = evaluator(model)
    # Ranked b (1), c (0), a (3).
    dcg = 1 + 0 + 3 / 2
    idcg = 3 + 1 * LOG3
    assert results["ndcg@10"] == pytest.approx(dcg / idcg)
    assert results["map"] == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize(
    ("sample", "error", "match"),
    [
        ({"query": "q", "positive": ["p"], "negative": ["n"], "documents": ["p"]}, ValueError, "both"),
        ({"query": "q", "positive": ["p"]}, ValueError, "neither"),
        ({"query": "q", "positive": [], "negative": ["n"]}, ValueError, "no positives"),
        ({"query": "q", "positive": {"p": 0}, "negative": ["n"]}, ValueError, "no positives"),
        ({"query": "q", "positive": ["p"], "documents": []}, ValueError, "empty"),
        ({"positive": ["p"], "negative": ["n"]}, ValueError, "'query'"),
        ({"query": "q", "positive": ["p"], "negative": "n"}, TypeError, "list of strings"),
        ({"query": "q", "positive": {"p": -1}, "negative": ["n"]}, ValueError, ">= 0"),
    ],
)
def test_reranking_bad_samples(sample, error, match):
    good = {"query": "q0", "positive": ["p"], "negative": ["n"]}
    with pytest.raises(error, match=match) as info:
        CrossEncoderRerankingEvaluator([good, sample])
    assert "samples[1]" in str(info.value) or "samples" in str(info.value)


def test_reranking_score_count_checked():
    evaluator = CrossEncoderRerankingEvaluator([{"query": "q", "positive": ["p"], "negative": ["n"]}])
    with pytest.raises(ValueError, match=r"one entry per pair \(2\)"):
        evaluator.compute_metrics([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="num_labels=1"):
        evaluator.compute_metrics(np.zeros((2, 3)))


# ------------------------------------------------------------------ sequential


def test_sequential_evaluator_and_its_pairs():
    first = CrossEncoderRerankingEvaluator(
        [{"query": "q1", "positive": ["p1"], "negative": ["n1", "m1"]}], name="a", write_csv=False
    )
    second = CrossEncoderRerankingEvaluator(
        [{"query": "q2", "positive": "p2", "negative": ["n2"]}], name="b", write_csv=False
    )
    model = rerank_model()
    sequential = SequentialEvaluator([first, second], main_score_function=lambda s: sum(s) / len(s))
    results = sequential(model)
    assert sequential.primary_metric == "sequential_score"
    assert results["a_ndcg@10"] == pytest.approx(1.0) and results["b_ndcg@10"] == pytest.approx(LOG3)
    assert results["sequential_score"] == pytest.approx((1 + LOG3) / 2)
    # One scoring pass over the concatenated pairs gives the same results.
    pairs = sequential.pairs()
    assert len(pairs) == 5
    assert sequential.compute_metrics(model.predict(pairs)) == pytest.approx(results)
    # A custom evaluator returning a bare number.
    custom = SequentialEvaluator([first, lambda m, *args: 0.25])
    assert not custom.supports_pairs
    assert custom(model)["evaluator_1"] == 0.25 and custom(model)["sequential_score"] == 0.25


# ------------------------------------------------------------------ NanoBEIR from a local directory


def write_parquet(path, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


NANO = {
    "MSMARCO": {
        "corpus": {"_id": ["d1", "d2", "d3"], "text": ["doc one", "doc two", "doc three"]},
        "queries": {"_id": ["q1", "q2"], "text": ["query one", "query two"]},
        "qrels": {"query-id": ["q1", "q2"], "corpus-id": ["d1", "d2"], "score": [1, 1]},
        "bm25": {"query-id": ["q1", "q2"], "corpus-ids": [["d3", "d1", "d2"], ["d2", "d3"]]},
    },
    "NQ": {
        "corpus": {"_id": ["e1", "e2"], "text": ["nq doc one", "nq doc two"]},
        "queries": {"_id": ["r1"], "text": ["nq query"]},
        "qrels": {"query-id": ["r1", "r1"], "corpus-id": ["e1", "e2"], "score": [2, 1]},
        "bm25": {"query-id": ["r1"], "corpus-ids": [["e2", "e1"]]},
    },
}


def nano_model():
    return TableModel({
        ("query one", "doc one"): 0.9, ("query one", "doc two"): 0.1, ("query one", "doc three"): 0.2,
        ("query two", "doc two"): 0.3, ("query two", "doc three"): 0.7,
        ("nq query", "nq doc one"): 0.8, ("nq query", "nq doc two"): 0.6,
    })


@pytest.fixture
def nano_dir(tmp_path):
    root = tmp_path / "NanoBEIR-en"
    for name, subsets in NANO.items():
        for subset, columns in subsets.items():
            write_parquet(root / subset / f"Nano{name}-00000-of-00001.parquet", columns)
    return root


def test_nanobeir_local_directory_keys_and_values(nano_dir, tmp_path):
    evaluator = CrossEncoderNanoBEIREvaluator(["msmarco", "NQ"], dataset_id=str(nano_dir), rerank_k=100, at_k=10)
    model = nano_model()
    results = evaluator(model, output_path=str(tmp_path / "out"))
    assert evaluator.primary_metric == "NanoBEIR_R100_mean_ndcg@10"
    assert model.calls == [(3 + 2 + 2, 32)]  # every pair of every data set in one pass
    # MSMARCO q1: reranked d1 first (1, 1, 1); base d3, d1 (AP 1/2, RR 1/2, NDCG 1/log2 3).
    #         q2: reranked d3, d2 (1/2, 1/2, 1/log2 3); base d2 first (1, 1, 1).
    ms = {"map": 0.75, "mrr@10": 0.75, "ndcg@10": (1 + LOG3) / 2}
    for metric, value in ms.items():
        assert results[f"NanoMSMARCO_R100_{metric}"] == pytest.approx(value)
        assert results[f"NanoMSMARCO_R100_base_{metric}"] == pytest.approx(value)
    # NQ (binary gains by default): both relevant -> every metric 1.
    assert results["NanoNQ_R100_ndcg@10"] == pytest.approx(1.0)
    assert results["NanoNQ_R100_base_map"] == pytest.approx(1.0)
    assert results["NanoBEIR_R100_mean_map"] == pytest.approx((0.75 + 1) / 2)
    assert results["NanoBEIR_R100_mean_ndcg@10"] == pytest.approx(((1 + LOG3) / 2 + 1) / 2)
    assert results["NanoBEIR_R100_mean_base_mrr@10"] == pytest.approx((0.75 + 1) / 2)
    rows = read_csv(tmp_path / "out" / "NanoBEIR_evaluation_mean_results.csv")
    assert rows[0] == ["epoch", "steps", "MAP", "MRR@10", "NDCG@10"]
    assert (tmp_path / "out" / "CrossEncoderRerankingEvaluator_NanoMSMARCO_R100_results_@10.csv").is_file()
    # Graded qrels: NQ ranks e1 (gain 2) before e2 (gain 1) -> still ideal; base e2, e1 is not.
    graded = CrossEncoderNanoBEIREvaluator(["nq"], dataset_id=str(nano_dir), graded=True, write_csv=False)
    graded_results = graded(nano_model())
    assert graded_results["NanoNQ_R100_ndcg@10"] == pytest.approx(1.0)
    assert graded_results["NanoNQ_R100_base_ndcg@10"] == pytest.approx((1 + 2 * LOG3) / (2 + LOG3))
    # rerank_k cuts the BM25 list: with 1 candidate, q1's positive is missed by the first stage.
    top1 = CrossEncoderNanoBEIREvaluator(["msmarco"], dataset_id=str(nano_dir), rerank_k=1, write_csv=False)
    assert top1.primary_metric == "NanoBEIR_R1_mean_ndcg@10"
    top1_results = top1(nano_model())
    assert top1_results["NanoMSMARCO_R1_base_map"] == pytest.approx((0 + 1) / 2)


def test_nanobeir_per_dataset_folders_and_relevance_layout(tmp_path):
    # One folder per data set holding subset files (the zeta-alpha-ai layout, with bm25 added).
    per_dataset = tmp_path / "per-dataset"
    for subset, columns in NANO["MSMARCO"].items():
        write_parquet(per_dataset / "NanoMSMARCO" / subset / "train-00000-of-00001.parquet", columns)
    a = CrossEncoderNanoBEIREvaluator(["msmarco"], dataset_id=str(per_dataset), write_csv=False)(nano_model())
    # The older sentence-transformers "Nano{name}-bm25" repositories: a `relevance` subset.
    template = tmp_path / "Nano{name}-bm25"
    root = tmp_path / "NanoMSMARCO-bm25"
    write_parquet(root / "corpus" / "train-00000-of-00001.parquet", NANO["MSMARCO"]["corpus"])
    write_parquet(root / "queries" / "train-00000-of-00001.parquet", NANO["MSMARCO"]["queries"])
    write_parquet(root / "relevance" / "train-00000-of-00001.parquet", {
        "query-id": ["q1", "q2"], "positive-corpus-ids": [["d1"], ["d2"]],
        "bm25-ranked-ids": [["d3", "d1", "d2"], ["d2", "d3"]],
    })
    b = CrossEncoderNanoBEIREvaluator(["msmarco"], dataset_id=str(template), write_csv=False)(nano_model())
    assert a == pytest.approx(b)
    assert a["NanoMSMARCO_R100_map"] == pytest.approx(0.75)


def test_nanobeir_errors(nano_dir, tmp_path):
    with pytest.raises(ValueError, match="not valid NanoBEIR"):
        CrossEncoderNanoBEIREvaluator(["msmarco", "wikipedia"], dataset_id=str(nano_dir))
    with pytest.raises(ValueError, match="cannot be empty"):
        CrossEncoderNanoBEIREvaluator([], dataset_id=str(nano_dir))
    with pytest.raises(ValueError, match="no files for subset 'corpus'"):
        CrossEncoderNanoBEIREvaluator(["scifact"], dataset_id=str(nano_dir))
    broken = tmp_path / "broken"
    write_parquet(broken / "corpus" / "NanoNQ.parquet", {"_id": ["e1"], "body": ["x"]})
    with pytest.raises(ValueError, match=r"lacks the columns \['text'\]"):
        CrossEncoderNanoBEIREvaluator(["nq"], dataset_id=str(broken))


# ------------------------------------------------------------------ sharded evaluation contract


def test_shard_range_covers_everything_once():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            ranges = [shard_range(n, r, world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert max(e - s for s, e in ranges) - min(e - s for s, e in ranges) <= 1
    with pytest.raises(ValueError, match="rank"):
        shard_range(5, 3, 3)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_evaluate_sharded_equals_single_process(nano_dir, tmp_path, world_size):
    evaluator = CrossEncoderNanoBEIREvaluator(["msmarco", "nq"], dataset_id=str(nano_dir))
    single = evaluator(nano_model())
    # Simulate the ranks: each scores its own shard; all_gather hands every rank all shards in rank order.
    pairs = evaluator.pairs()
    local_scores = []
    for rank in range(world_size):
        start, end = shard_range(len(pairs), rank, world_size)
        local_scores.append(nano_model().predict(pairs[start:end]))
    outputs = []
    for rank in range(world_size):
        model = nano_model()
        out = tmp_path / f"rank{rank}"
        outputs.append(evaluate_sharded(
            evaluator, model, output_path=str(out), epoch=1, steps=3, rank=rank, world_size=world_size,
            all_gather=lambda local, rank=rank: [local if r == rank else local_scores[r] for r in range(world_size)],
        ))
        start, end = shard_range(len(pairs), rank, world_size)
        assert model.calls == ([(end - start, 32)] if end > start else [(0, 32)]) or model.calls == []
        # Only rank 0 writes CSV files and model card data.
        assert (out / "NanoBEIR_evaluation_mean_results.csv").is_file() == (rank == 0)
        assert bool(model.model_card_data) == (rank == 0)
    for result in outputs:
        assert result == pytest.approx(single)


def test_nanobeir_hub_id_goes_through_datasets_load_dataset(monkeypatch):
    import datasets

    requested = []

    def fake_load_dataset(path, name, split):
        requested.append((path, name, split))
        if name == "relevance":
            raise FileNotFoundError(name)
        human = split[len("Nano"):]
        return datasets.Dataset.from_dict(NANO[human][name])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda path: ["bm25", "corpus", "qrels", "queries"])
    evaluator = CrossEncoderNanoBEIREvaluator(["msmarco"], write_csv=False)
    assert evaluator.dataset_id == "sentence-transformers/NanoBEIR-en"
    assert sorted(requested) == [("sentence-transformers/NanoBEIR-en", subset, "NanoMSMARCO")
                                 for subset in ("bm25", "corpus", "qrels", "queries")]
    assert evaluator(nano_model())["NanoMSMARCO_R100_map"] == pytest.approx(0.75)


def test_nanobeir_hub_id_offline_gives_a_clear_error():
    with pytest.raises(ValueError, match="Could not load subset 'corpus' split 'NanoMSMARCO'"):
        CrossEncoderNanoBEIREvaluator(["msmarco"], dataset_id="raycross-test/does-not-exist")
