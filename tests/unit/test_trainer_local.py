"""CrossEncoderTrainer in this process (num_workers=0): the same per-worker loop as on Ray workers.

A tiny BERT learns a synthetic reranking task (a passage is relevant when it mentions "dog"); the
expectations (steps, schedules, rotation, best checkpoint, proportions, duplicates) are recomputed in the
tests from the run's own logs or by brute force.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, EarlyStoppingCallback, TrainerCallback

from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.losses import BinaryCrossEntropyLoss, ListNetLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

WORDS = "the man woman dog cat water food house car street city play run walk".split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_rows(n: int, seed: int, tag: str = "") -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        query = " ".join(([tag] if tag else []) + rng.choices(WORDS, k=3))
        passage = " ".join(rng.choices(WORDS, k=4))
        rows.append({"query": query, "passage": passage, "label": int("dog" in passage.split())})
    return rows


def rerank_samples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        query = " ".join(rng.choices(WORDS, k=3))
        others = [w for w in WORDS if w != "dog"]
        samples.append({
            "query": query,
            "positive": [" ".join(rng.choices(others, k=3) + ["dog"])],
            "negative": [" ".join(rng.choices(others, k=4)) for _ in range(3)],
        })
    return samples


def args_for(path: Path, **kwargs) -> CrossEncoderTrainingArguments:
    base = dict(num_train_epochs=1, per_device_train_batch_size=8, learning_rate=2e-3, logging_steps=1,
                save_strategy="no", disable_tqdm=True, seed=7)
    base.update(kwargs)
    return CrossEncoderTrainingArguments(str(path), **base)


def weights(model: CrossEncoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.hf_model.state_dict().items()}


class RecordingLoss(nn.Module):
    """raycross's BCE loss that also records every batch it sees (for counting in tests)."""

    def __init__(self, model: CrossEncoder, name: str, seen: list) -> None:
        super().__init__()
        self.model = model
        self.inner = BinaryCrossEntropyLoss(model)
        self.name = name
        self.seen = seen

    def forward(self, inputs, labels):
        self.seen.append((self.name, [list(column) for column in inputs]))
        return self.inner(inputs, labels)

    def validate_columns(self, *args, **kwargs):
        return self.inner.validate_columns(*args, **kwargs)

    def get_config_dict(self):
        return self.inner.get_config_dict()


# ---------------------------------------------------------------------- the full run
def test_full_run_logs_evaluates_rotates_restores_best_and_exports(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    train = make_rows(96, seed=1)
    evaluator = CrossEncoderRerankingEvaluator(rerank_samples(12, seed=2), name="dev")
    args = args_for(
        tmp_path / "out", num_train_epochs=2, logging_steps=3, eval_strategy="steps", eval_steps=4,
        save_strategy="steps", save_steps=4, save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="dev_ndcg@10",
        report_to="tensorboard", weight_decay=0.01,
    )
    trainer = CrossEncoderTrainer(model, args, train_dataset=train, eval_dataset=make_rows(24, seed=3),
                                  loss=BinaryCrossEntropyLoss(model), evaluator=evaluator)
    result = trainer.train()

    steps_per_epoch = math.ceil(96 / 8)
    assert result.global_step == 2 * steps_per_epoch
    train_logs = [e for e in result.log_history if "loss" in e]
    eval_logs = [e for e in result.log_history if "eval_loss" in e]
    assert [e["step"] for e in eval_logs] == list(range(4, 25, 4))
    assert train_logs[-1]["loss"] < train_logs[0]["loss"]
    assert eval_logs[-1]["eval_loss"] < eval_logs[0]["eval_loss"]
    for entry in train_logs:  # linear decay from 2e-3 to 0 over 24 steps, no warmup
        assert entry["learning_rate"] == pytest.approx(2e-3 * (1 - entry["step"] / 24), abs=1e-9)
        assert entry["grad_norm"] > 0 and entry["samples_per_second"] > 0 and entry["tokens_per_second"] > 0
    assert {"train_runtime", "train_samples_per_second", "train_loss", "eval_dev_ndcg@10"} <= set(result.metrics)

    # best checkpoint: highest NDCG, ties to the later step (what rotation keeps)
    scores = [(e["eval_dev_ndcg@10"], e["step"]) for e in eval_logs]
    best_step = max(scores)[1]
    assert result.best_checkpoint == str((tmp_path / "out" / f"checkpoint-{best_step}").absolute())
    assert result.best_metric == pytest.approx(max(scores)[0])
    kept = sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*"))
    assert kept == sorted({f"checkpoint-{best_step}", "checkpoint-24"})  # limit 1 + the latest

    # evaluating the final (best) model here gives back the metrics logged at the best step
    again = trainer.evaluate()
    at_best = next(e for e in eval_logs if e["step"] == best_step)
    assert again["eval_dev_ndcg@10"] == pytest.approx(at_best["eval_dev_ndcg@10"], abs=1e-9)
    assert again["eval_loss"] == pytest.approx(at_best["eval_loss"], rel=1e-5)

    # the final model is the best checkpoint's, loads in raycross and transformers with equal scores
    best_hf = AutoModelForSequenceClassification.from_pretrained(result.best_checkpoint)
    for name, tensor in best_hf.state_dict().items():
        torch.testing.assert_close(model.hf_model.state_dict()[name], tensor)
    reloaded = CrossEncoder(str(tmp_path / "out"), device="cpu")
    pairs = [("the dog", "a dog runs"), ("the cat", "water house")]
    np.testing.assert_allclose(reloaded.predict(pairs), model.predict(pairs), rtol=1e-5)
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        logits = hf(**reloaded.preprocess(pairs)).logits[:, 0]
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), reloaded.predict(pairs), rtol=1e-5)

    # state, model card and TensorBoard events
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 24 and state["best_model_checkpoint"] == result.best_checkpoint
    card = (tmp_path / "out" / "README.md").read_text()
    assert "### Training Logs" in card and "BinaryCrossEntropyLoss" in card and "96 rows" in card
    assert "`load_best_model_at_end`: True" in card and "eval_dev_ndcg@10" in card
    for entry in eval_logs:
        assert f"| {entry['step']} |" in card

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "out" / "runs" / "out"))
    events.Reload()
    tb_loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert tb_loss == pytest.approx({e["step"]: e["loss"] for e in train_logs})
    assert {e.step for e in events.Scalars("eval/dev_ndcg@10")} == {e["step"] for e in eval_logs}


# ---------------------------------------------------------------------- determinism and resume
class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class StepRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resume_after_interruption_continues_exactly(tmp_path, tiny_model_path):
    train = make_rows(80, seed=4)
    kwargs = dict(max_steps=14, save_strategy="steps", save_steps=6, logging_steps=1, warmup_steps=3)

    straight = CrossEncoder(str(tiny_model_path), device="cpu")
    full = CrossEncoderTrainer(straight, args_for(tmp_path / "a", **kwargs), train_dataset=train,
                               loss=BinaryCrossEntropyLoss(straight)).train()

    first = CrossEncoder(str(tiny_model_path), device="cpu")
    CrossEncoderTrainer(first, args_for(tmp_path / "b", **kwargs), train_dataset=train,
                        loss=BinaryCrossEntropyLoss(first), callbacks=[StopAt(8)]).train()
    # stopped at 8: the last periodic checkpoint is 6, the stop itself saved 8; rerun resumes at 8
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
    second = CrossEncoder(str(tiny_model_path), device="cpu")
    steps = StepRecorder()
    resumed = CrossEncoderTrainer(second, args_for(tmp_path / "b", **kwargs), train_dataset=train,
                                  loss=BinaryCrossEntropyLoss(second), callbacks=[steps]).train()

    assert steps.steps == list(range(9, 15))  # only the missing steps were trained
    assert resumed.global_step == 14
    curve = {e["step"]: e["loss"] for e in full.log_history if "loss" in e}
    resumed_curve = {e["step"]: e["loss"] for e in resumed.log_history if "loss" in e}
    assert sorted(resumed_curve) == list(range(1, 15))
    assert resumed_curve == pytest.approx(curve, rel=1e-5, abs=1e-6)
    for name, tensor in weights(straight).items():
        torch.testing.assert_close(weights(second)[name], tensor, rtol=1e-5, atol=1e-6)


def test_fresh_start_explicit_checkpoint_and_finished_rerun(tmp_path, tiny_model_path):
    train = make_rows(40, seed=4)
    kwargs = dict(max_steps=6, save_strategy="steps", save_steps=3, logging_steps=1)

    def run(output: str, **train_kwargs) -> tuple[list[int], object]:
        model = CrossEncoder(str(tiny_model_path), device="cpu")
        steps = StepRecorder()
        result = CrossEncoderTrainer(model, args_for(tmp_path / output, **kwargs), train_dataset=train,
                                     loss=BinaryCrossEntropyLoss(model), callbacks=[steps]).train(**train_kwargs)
        return steps.steps, result

    assert run("a")[0] == list(range(1, 7))
    assert run("a")[0] == []  # finished: a rerun resumes at the end, nothing left to train
    assert run("a", resume_from_checkpoint=False)[0] == list(range(1, 7))  # old checkpoints deleted first
    steps, result = run("b", resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-3"))
    assert steps == [4, 5, 6] and result.global_step == 6
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-6"]


class ScriptedEvaluator:
    """Returns the next of the given scores at each call (a quality curve chosen by the test)."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = list(scores)
        self.primary_metric = "quality"
        self.greater_is_better = True

    def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict[str, float]:
        return {"quality": self.scores.pop(0)}


def test_checkpoints_saved_between_evaluations_never_rotate_away_the_best(tmp_path, tiny_model_path):
    # evaluations at 2, 4 and 5 score 0.9, 0.5, 0.4; checkpoints are saved every step. checkpoint-3
    # carries step 2's metrics but its weights were never evaluated: it must not displace checkpoint-2
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    args = args_for(tmp_path / "out", max_steps=5, logging_steps=1, eval_strategy="steps", eval_steps=2,
                    save_strategy="steps", save_steps=1, save_total_limit=1, metric_for_best_model="quality")
    snapshots = {}

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots[state.global_step] = weights(model)

    result = CrossEncoderTrainer(model, args, train_dataset=make_rows(64, seed=4),
                                 evaluator=ScriptedEvaluator([0.9, 0.5, 0.4]), loss=BinaryCrossEntropyLoss(model),
                                 callbacks=[Snapshot()]).train()
    assert [e["step"] for e in result.log_history if "eval_quality" in e] == [2, 4, 5]
    assert result.best_checkpoint.endswith("checkpoint-2") and result.best_metric == pytest.approx(0.9)
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-5"]
    best = AutoModelForSequenceClassification.from_pretrained(result.best_checkpoint).state_dict()
    for name, tensor in snapshots[2].items():  # the kept best checkpoint holds step 2's weights
        torch.testing.assert_close(best[name], tensor)
    progress = json.loads((tmp_path / "out" / "checkpoint-5" / "raycross_progress.json").read_text())
    assert progress["metrics"]["checkpoint_score"] == pytest.approx(0.4)


# ---------------------------------------------------------------------- samplers in training
@pytest.mark.parametrize(("kind", "epochs"), [("proportional", 2), ("round_robin", 1)])
def test_multi_dataset_batches_come_from_one_dataset_in_the_promised_proportion(tmp_path, tiny_model_path, kind,
                                                                                epochs):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    sizes = {"men": 60, "women": 20, "houses": 36}  # 15, 5 and 9 batches of 4
    tags = {"men": "man", "women": "woman", "houses": "house"}
    data = {name: make_rows(n, seed=i, tag=tags[name]) for i, (name, n) in enumerate(sizes.items())}
    seen: list = []
    losses = {name: RecordingLoss(model, name, seen) for name in sizes}
    args = args_for(tmp_path, num_train_epochs=epochs, per_device_train_batch_size=4,
                    multi_dataset_batch_sampler=kind, logging_steps=50)
    result = CrossEncoderTrainer(model, args, train_dataset=data, loss=losses).train()

    batches = {name: math.ceil(n / 4) for name, n in sizes.items()}
    if kind == "proportional":
        expected = {name: epochs * b for name, b in batches.items()}
    else:
        expected = {name: epochs * min(batches.values()) for name in sizes}
    assert Counter(name for name, _ in seen) == expected
    assert result.global_step == sum(expected.values())
    for name, (queries, _) in seen:  # every batch holds rows of its own dataset only
        assert all(q.split()[0] == tags[name] for q in queries)
    if kind == "proportional":
        assert {name for name, _ in seen[:10]} != {"men"}  # the datasets are interleaved


def test_no_duplicates_sampler_keeps_texts_unique_per_batch(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    rng = random.Random(5)
    queries = [" ".join(rng.choices(WORDS, k=2)) for _ in range(12)]  # 12 queries, many rows each
    rows = [{"query": rng.choice(queries), "passage": " ".join(rng.choices(WORDS, k=3)), "label": rng.randint(0, 1)}
            for _ in range(96)]
    seen: list = []
    args = args_for(tmp_path, batch_sampler="no_duplicates", logging_steps=50)
    CrossEncoderTrainer(model, args, train_dataset=rows, loss=RecordingLoss(model, "all", seen)).train()
    assert len(seen) == math.ceil(96 / 8)
    for _, (batch_queries, batch_passages) in seen:
        texts = batch_queries + batch_passages
        assert len(texts) == len(set(texts))


# ---------------------------------------------------------------------- precision, accumulation, listwise
def test_fp16_accumulation_and_checkpointing_make_steps_and_save_a_scaler(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    args = args_for(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=3, fp16=True,
                    gradient_checkpointing=True, save_strategy="steps", save_steps=100, logging_steps=2)
    result = CrossEncoderTrainer(model, args, train_dataset=make_rows(40, seed=6),
                                 loss=BinaryCrossEntropyLoss(model)).train()
    assert result.global_step == math.ceil(math.ceil(40 / 4) / 3)  # 10 micro-batches -> 4 optimizer steps
    assert (tmp_path / f"checkpoint-{result.global_step}" / "scaler.pt").is_file()
    assert all(math.isfinite(e["loss"]) for e in result.log_history if "loss" in e)


def test_bf16_listwise_loss_with_list_columns(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    rows = [{"query": r["query"], "docs": [r["passage"], s["passage"], "dog run"],
             "labels": [r["label"], s["label"], 1]}
            for r, s in zip(make_rows(32, seed=7), make_rows(32, seed=8))]
    args = args_for(tmp_path, bf16=True, per_device_train_batch_size=4, num_train_epochs=2, logging_steps=4)
    result = CrossEncoderTrainer(model, args, train_dataset=rows, loss=ListNetLoss(model)).train()
    assert result.global_step == 16
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_transformers_early_stopping_callback_stops_training(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    evaluator = CrossEncoderRerankingEvaluator(rerank_samples(6, seed=9), name="dev")
    args = args_for(tmp_path, num_train_epochs=20, learning_rate=1e-9, eval_strategy="steps", eval_steps=2,
                    save_strategy="steps", save_steps=2, load_best_model_at_end=True, metric_for_best_model="dev_ndcg@10", logging_steps=50)
    result = CrossEncoderTrainer(model, args, train_dataset=make_rows(16, seed=10), evaluator=evaluator,
                                 callbacks=[EarlyStoppingCallback(early_stopping_patience=2)]).train()
    # with a learning rate of 1e-9 the metric never improves: stop after 1 + 2 evaluations
    assert result.global_step == 6
    assert len([e for e in result.log_history if "eval_dev_ndcg@10" in e]) == 3


