"""The pre-v4 evaluators (CEBinaryAccuracyEvaluator, ...): old arguments, old float results, a deprecation
warning naming the replacement, compared with sentence-transformers 6.2 scoring the same saved model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from raycross import CrossEncoder, InputExample
from raycross.evaluation import legacy

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder  # noqa: E402
from sentence_transformers.cross_encoder import evaluation as st_eval  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = "man woman dog cat child water food house car street city red blue green white".split()
PAIRS = [(a, f"{b} {c}") for a, b, c in zip(WORDS, WORDS[3:] + WORDS[:3], WORDS[7:] + WORDS[:7])]
BINARY = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1]
CLASSES = [0, 1, 2, 2, 1, 0, 0, 1, 2, 1, 0, 2, 1, 0, 2]
GOLD = np.linspace(0.0, 1.0, len(PAIRS)).tolist()


def _new(cls, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluator = cls(*args, **kwargs)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    return evaluator, messages


@pytest.fixture(scope="module")
def models(tiny_model_path, tiny_model_path_3labels, tmp_path_factory):
    """(raycross, sentence-transformers) loads of the same saved model; the head is scaled up so that the
    tiny random model's scores have no float32 ties (the metrics' tie rules differ on purpose)."""
    import torch

    out = {}
    for labels, path in ((1, tiny_model_path), (3, tiny_model_path_3labels)):
        model = CrossEncoder(str(path), device="cpu")
        with torch.no_grad():
            model.hf_model.classifier.weight.mul_(200.0)
        saved = tmp_path_factory.mktemp(f"legacy-{labels}")
        model.save_pretrained(saved)
        out[labels] = (CrossEncoder(str(saved), device="cpu"), STCrossEncoder(str(saved), device="cpu"))
        scores = out[labels][1].predict(PAIRS).reshape(len(PAIRS), -1)[:, 0]
        assert len(set(scores.tolist())) == len(PAIRS)
    return out


@pytest.mark.parametrize("name, replacement", [
    ("CEBinaryAccuracyEvaluator", "CrossEncoderClassificationEvaluator"),
    ("CEBinaryClassificationEvaluator", "CrossEncoderClassificationEvaluator"),
    ("CEF1Evaluator", "CrossEncoderClassificationEvaluator"),
    ("CESoftmaxAccuracyEvaluator", "CrossEncoderClassificationEvaluator"),
    ("CECorrelationEvaluator", "CrossEncoderCorrelationEvaluator"),
    ("CERerankingEvaluator", "CrossEncoderRerankingEvaluator"),
])
def test_deprecation_warning_names_the_replacement_like_st(name, replacement):
    args = ([{"query": "q", "positive": ["a"], "negative": ["b"]}],) if name == "CERerankingEvaluator" else (
        PAIRS, GOLD if name == "CECorrelationEvaluator" else BINARY)
    _, ours = _new(getattr(legacy, name), *args)
    _, theirs = _new(getattr(st_eval, name), *args)
    assert len(ours) == 1 and replacement in ours[0]
    assert theirs, "sentence-transformers 6.2 warns as well"
    if name != "CERerankingEvaluator":  # 6.2's message names CrossEncoderCorrelationEvaluator there (a typo)
        assert ours == theirs


def test_binary_classification_returns_average_precision_like_st(models, tmp_path):
    ours_model, st_model = models[1]
    evaluator, _ = _new(legacy.CEBinaryClassificationEvaluator, PAIRS, BINARY, name="dev")
    value = evaluator(ours_model, output_path=str(tmp_path))
    st_metrics = _new(st_eval.CEBinaryClassificationEvaluator, PAIRS, BINARY, name="dev")[0](st_model)
    assert isinstance(value, float)
    assert value == pytest.approx(st_metrics["dev_average_precision"], abs=1e-6)
    header = (tmp_path / "CEBinaryClassificationEvaluator_dev_results.csv").read_text().splitlines()[0]
    assert header == "epoch,steps,Accuracy,Accuracy_Threshold,F1,F1_Threshold,Precision,Recall,Average_Precision"


def test_binary_accuracy_threshold_and_input_examples(models):
    ours_model, st_model = models[1]
    scores = st_model.predict(PAIRS)
    threshold = float(np.median(scores))
    examples = [InputExample(texts=list(p), label=l) for p, l in zip(PAIRS, BINARY)]
    evaluator, _ = _new(legacy.CEBinaryAccuracyEvaluator.from_input_examples, examples, threshold=threshold)
    expected = float(np.mean((scores > threshold) == np.array(BINARY)))
    assert evaluator(ours_model) == pytest.approx(expected)


def test_correlation_returns_spearman_like_st(models):
    ours_model, st_model = models[1]
    value = _new(legacy.CECorrelationEvaluator, PAIRS, GOLD, name="sts")[0](ours_model)
    st_metrics = _new(st_eval.CECorrelationEvaluator, PAIRS, GOLD, name="sts")[0](st_model)
    assert value == pytest.approx(st_metrics["sts_spearman"], abs=1e-6)


def test_softmax_accuracy_and_f1_on_three_labels(models):
    ours_model, st_model = models[3]
    predicted = np.argmax(st_model.predict(PAIRS), axis=1)
    labels = np.array(CLASSES)
    accuracy = _new(legacy.CESoftmaxAccuracyEvaluator, PAIRS, CLASSES)[0](ours_model)
    assert accuracy == pytest.approx(float(np.mean(predicted == labels)))
    f1 = _new(legacy.CEF1Evaluator, PAIRS, CLASSES)[0](ours_model)
    st_metrics = _new(st_eval.CrossEncoderClassificationEvaluator, PAIRS, CLASSES)[0](st_model)
    micro = float(np.mean(predicted == labels))  # micro F1 of single-label multi-class = accuracy
    assert f1 == pytest.approx((micro + st_metrics["f1_macro"]) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="only one distinct label"):
        _new(legacy.CEF1Evaluator, PAIRS, [1] * len(PAIRS))


def test_reranking_returns_mrr_like_st(models):
    ours_model, st_model = models[1]
    samples = [{"query": w, "positive": [PAIRS[i][1]], "negative": [p[1] for p in PAIRS[i + 1 : i + 6]]}
               for i, w in enumerate(WORDS[:8])]
    samples.append({"query": "skipped", "positive": [], "negative": ["a"]})  # no positive: skipped
    value = _new(legacy.CERerankingEvaluator, samples, at_k=3, name="r")[0](ours_model)
    st_metrics = _new(st_eval.CrossEncoderRerankingEvaluator, samples[:-1], at_k=3, name="r")[0](st_model)
    assert value == pytest.approx(st_metrics["r_mrr@3"], abs=1e-6)


def test_float_result_feeds_trainer_metrics_under_primary_key(models):
    evaluator, _ = _new(legacy.CECorrelationEvaluator, PAIRS, GOLD, name="sts")
    assert evaluator.primary_metric == "sts_spearman"
    metrics = evaluator.compute_metrics(models[1][0].predict(PAIRS))
    assert set(metrics) == {"sts_pearson", "sts_spearman"}
