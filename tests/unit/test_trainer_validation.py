"""Bad input fails fast on the driver, with a message naming what is wrong, before any worker starts.

Several cases ask for Ray workers (num_workers=2 or 4): the error must come before Ray is even started.
"""

from __future__ import annotations

import pytest

from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, ListNetLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

PAIRS = {"query": ["a man", "a dog", "the cat", "water"], "passage": ["x", "y", "z", "w"], "label": [1, 0, 1, 0]}
SAMPLES = [{"query": "dog", "positive": ["a dog"], "negative": ["a cat"]}]


def _args(tmp_path, **kwargs):
    return CrossEncoderTrainingArguments(str(tmp_path / "out"), disable_tqdm=True, **kwargs)


CASES = {
    "three inputs for a pair loss": (
        lambda m, a: dict(train_dataset={**PAIRS, "extra": ["1", "2", "3", "4"]}, loss=BinaryCrossEntropyLoss(m)),
        ValueError, r"train_dataset .*columns \['query', 'passage', 'extra', 'label'\].*BinaryCrossEntropyLoss"),
    "no label for BCE": (
        lambda m, a: dict(train_dataset={"query": PAIRS["query"], "passage": PAIRS["passage"]},
                          loss=BinaryCrossEntropyLoss(m)),
        ValueError, "needs a label column"),
    "listwise loss on scalar columns": (
        lambda m, a: dict(train_dataset=PAIRS, loss=ListNetLoss(m)),
        ValueError, "list of document texts"),
    "dict losses vs dict datasets keys": (
        lambda m, a: dict(train_dataset={"a": PAIRS, "b": PAIRS},
                          loss={"a": BinaryCrossEntropyLoss(m), "c": BinaryCrossEntropyLoss(m)}),
        ValueError, r"missing \['b'\], unexpected \['c'\]"),
    "dict losses with a single dataset": (
        lambda m, a: dict(train_dataset=PAIRS, loss={"a": BinaryCrossEntropyLoss(m)}),
        ValueError, "needs a dict of training datasets"),
    "eval dataset key without a loss": (
        lambda m, a: dict(train_dataset={"a": PAIRS}, eval_dataset={"b": PAIRS},
                          loss={"a": BinaryCrossEntropyLoss(m)}),
        ValueError, r"keys \['b'\] have no loss"),
    "loss built for another model": (
        lambda m, a: dict(train_dataset=PAIRS, loss=BinaryCrossEntropyLoss(CrossEncoder(m.model_name_or_path,
                                                                                         device="cpu"))),
        ValueError, "different model object"),
    "two label columns": (
        lambda m, a: dict(train_dataset={**PAIRS, "score": [0.1, 0.2, 0.3, 0.4]}),
        ValueError, "several label columns"),
    "empty dataset": (
        lambda m, a: dict(train_dataset={"query": [], "passage": [], "label": []}),
        ValueError, "is empty"),
    "metric not produced by the evaluator": (
        lambda m, a: dict(train_dataset=PAIRS, evaluator=CrossEncoderRerankingEvaluator(SAMPLES, name="dev")),
        ValueError, r"metric_for_best_model='dev_accuracy'.*'eval_dev_ndcg@10'"),
    "eval loss metric without eval dataset": (
        lambda m, a: dict(train_dataset=PAIRS, evaluator=CrossEncoderRerankingEvaluator(SAMPLES, name="dev")),
        ValueError, r"not 'eval_loss'"),
    "evaluation without data or evaluator": (
        lambda m, a: dict(train_dataset=PAIRS), ValueError, "needs an eval_dataset or an evaluator"),
    "group_by_label with one label": (
        lambda m, a: dict(train_dataset={**PAIRS, "label": [1, 1, 1, 0]}), ValueError, "at least 2 labels"),
    "fewer rows than workers": (
        lambda m, a: dict(train_dataset=PAIRS), ValueError, r"4 row\(s\), fewer than the 5 workers"),
    "no full batch per worker with drop_last": (
        lambda m, a: dict(train_dataset=PAIRS), ValueError, "no full batch remains"),
    "storage URI in-process": (
        lambda m, a: dict(train_dataset=PAIRS), ValueError, "a URI needs Ray workers"),
}
ARGS = {
    "metric not produced by the evaluator": dict(metric_for_best_model="dev_accuracy"),
    "eval loss metric without eval dataset": dict(metric_for_best_model="eval_loss"),
    "evaluation without data or evaluator": dict(eval_strategy="steps", eval_steps=5),
    "group_by_label with one label": dict(batch_sampler="group_by_label", per_device_train_batch_size=4),
    "fewer rows than workers": dict(num_workers=5),
    "no full batch per worker with drop_last": dict(num_workers=2, dataloader_drop_last=True),
    "storage URI in-process": dict(storage_path="s3://bucket/runs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_fast_with_a_clear_message(case, tmp_path, tiny_model_path, monkeypatch, forbid_ray_start):
    import ray

    import raycross.training.trainer as trainer_module

    def no_training(*args, **kwargs):  # any training attempt would be a failure of the check
        raise AssertionError("training started")

    monkeypatch.setattr(trainer_module, "run_training", no_training)
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    args = _args(tmp_path, **ARGS.get(case, {}))
    build, error, message = CASES[case]
    with pytest.raises(error, match=message):
        CrossEncoderTrainer(model, args, **build(model, args)).train()


def test_class_labels_must_fit_num_labels(tmp_path, tiny_model_path_3labels):
    model = CrossEncoder(str(tiny_model_path_3labels), device="cpu")
    data = {"premise": ["a", "b", "c"], "hypothesis": ["d", "e", "f"], "label": [0, 4, 2]}
    with pytest.raises(ValueError, match=r"range over \[0, 4\].*num_labels=3"):
        CrossEncoderTrainer(model, _args(tmp_path), train_dataset=data, loss=CrossEntropyLoss(model))
    with pytest.raises(ValueError, match=r"class index in \[0, num_labels\).*found float 0.5"):
        CrossEncoderTrainer(model, _args(tmp_path), train_dataset={**data, "label": [0.5, 0.1, 0.2]})


def test_gpu_asked_for_but_absent(tmp_path, tiny_model_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    trainer = CrossEncoderTrainer(model, _args(tmp_path, use_gpu=True), train_dataset=PAIRS)
    with pytest.raises(ValueError, match="use_gpu=True, but no CUDA GPU"):
        trainer.train()
