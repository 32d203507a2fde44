"""Multi-worker training on Ray Train (2 workers, gloo, CPU, fractional CPUs): the same loss curve as
in-process training for the same seed, the multi-dataset schedule counted on every worker, and recovery
from a worker killed mid-run.
"""

from __future__ import annotations

import math
import os
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, TrainerCallback

from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.losses import BinaryCrossEntropyLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

pytestmark = pytest.mark.slow

WORDS = "the man woman dog cat water food house car street city play run walk".split()


@pytest.fixture(autouse=True)
def ship_this_module_by_value(ray_session):
    # the losses and callbacks below are defined here; Ray workers cannot import a test module
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def make_rows(n: int, seed: int, tag: str) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        passage = rng.choices(WORDS, k=4)
        rows.append({"query": " ".join([tag] + rng.choices(WORDS, k=2)), "passage": " ".join(passage),
                     "label": int("dog" in passage)})
    return rows


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


class LoggedLoss(nn.Module):
    """raycross's BCE that appends, per worker, which dataset every training batch came from."""

    def __init__(self, model, name: str, log_dir: str) -> None:
        super().__init__()
        self.model = model
        self.inner = BinaryCrossEntropyLoss(model)
        self.name = name
        self.log_dir = log_dir

    def forward(self, inputs, labels):
        if torch.is_grad_enabled():
            tags = {q.split()[0] for q in inputs[0]}
            with open(Path(self.log_dir) / f"rank{_rank()}.txt", "a") as f:
                f.write(f"{self.name} {len(inputs[0])} {','.join(sorted(tags))}\n")
        return self.inner(inputs, labels)

    def validate_columns(self, *args, **kwargs):
        return self.inner.validate_columns(*args, **kwargs)

    def get_config_dict(self):
        return self.inner.get_config_dict()


def rerank_samples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    others = [w for w in WORDS if w != "dog"]
    return [{"query": " ".join(rng.choices(WORDS, k=2)), "positive": [" ".join(rng.choices(others, k=3) + ["dog"])],
             "negative": [" ".join(rng.choices(others, k=4)) for _ in range(3)]} for _ in range(n)]


def _train(model, output_dir, data, eval_rows, log_dir, **kwargs):
    args = CrossEncoderTrainingArguments(
        str(output_dir), num_train_epochs=2, learning_rate=2e-3, logging_steps=4, eval_strategy="steps",
        eval_steps=8, save_strategy="no", seed=11, disable_tqdm=True, **kwargs,
    )
    losses = {name: LoggedLoss(model, name, str(log_dir)) for name in data}
    evaluator = CrossEncoderRerankingEvaluator(rerank_samples(15, seed=4), name="dev")
    return CrossEncoderTrainer(model, args, train_dataset=data, eval_dataset={"men": eval_rows}, loss=losses,
                               evaluator=evaluator).train()


def test_two_workers_follow_the_in_process_loss_curve_and_the_schedule(tmp_path, tiny_model_path):
    data = {"men": make_rows(192, seed=1, tag="man"), "women": make_rows(64, seed=2, tag="woman")}
    eval_rows = make_rows(64, seed=3, tag="man")
    (tmp_path / "log1").mkdir()
    (tmp_path / "log2").mkdir()

    local_model = CrossEncoder(str(tiny_model_path), device="cpu")
    local = _train(local_model, tmp_path / "local", data, eval_rows, tmp_path / "log1",
                   per_device_train_batch_size=16)
    ray_model = CrossEncoder(str(tiny_model_path), device="cpu")
    distributed = _train(ray_model, tmp_path / "ray", data, eval_rows, tmp_path / "log2",
                         per_device_train_batch_size=8, num_workers=2, resources_per_worker={"CPU": 0.5},
                         shard_eval=True)

    # same global batch (16 = 1 x 16 = 2 x 8), same number of steps, close loss curves
    steps = 2 * (math.ceil(192 / 16) + math.ceil(64 / 16))
    assert local.global_step == distributed.global_step == steps
    curve_local = [e["loss"] for e in local.log_history if "loss" in e]
    curve_ray = [e["loss"] for e in distributed.log_history if "loss" in e]
    assert len(curve_local) == len(curve_ray) == steps // 4
    # the batches differ (each worker shuffles its own shard), so single log windows are noisy: compare
    # the loss per epoch (4 windows of 64 rows) and the evaluation loss on the same 64 rows
    per_epoch_local = np.asarray(curve_local).reshape(2, -1).mean(axis=1)
    per_epoch_ray = np.asarray(curve_ray).reshape(2, -1).mean(axis=1)
    eval_local = [e["eval_men_loss"] for e in local.log_history if "eval_men_loss" in e]
    eval_ray = [e["eval_men_loss"] for e in distributed.log_history if "eval_men_loss" in e]
    assert len(eval_ray) == steps // 8
    report = f"train windows {curve_local} vs {curve_ray}; eval {eval_local} vs {eval_ray}"
    np.testing.assert_allclose(per_epoch_ray, per_epoch_local, atol=0.04, err_msg=report)
    np.testing.assert_allclose(eval_ray, eval_local, atol=0.04, err_msg=report)
    assert eval_ray[-1] < eval_ray[0] - 0.05 and eval_local[-1] < eval_local[0] - 0.05, report  # both learn

    # the proportional schedule, counted on each worker: every batch from one dataset, the same dataset
    # on both workers at every step, 12 + 4 batches per epoch on each
    rank0 = (tmp_path / "log2" / "rank0.txt").read_text().split("\n")[:-1]
    rank1 = (tmp_path / "log2" / "rank1.txt").read_text().split("\n")[:-1]
    names0, names1 = [line.split()[0] for line in rank0], [line.split()[0] for line in rank1]
    assert names0 == names1
    assert Counter(names0) == {"men": 2 * 12, "women": 2 * 4}
    tag = {"men": "man", "women": "woman"}
    assert all(line.split()[2] == tag[line.split()[0]] for line in rank0 + rank1)
    assert all(int(line.split()[1]) == 8 for line in rank0 + rank1)
    local_names = [line.split()[0] for line in (tmp_path / "log1" / "rank0.txt").read_text().split("\n")[:-1]]
    assert Counter(local_names) == Counter(names0)

    # the final model of the Ray run is on the driver and in output_dir; the last evaluation, sharded
    # over the two workers (loss and evaluator pairs), equals an evaluation of that model here
    reloaded = CrossEncoder(str(tmp_path / "ray"), device="cpu")
    pairs = [("man dog", "a dog runs"), ("woman cat", "water house")]
    np.testing.assert_allclose(reloaded.predict(pairs), ray_model.predict(pairs), rtol=1e-5)
    last_eval = [e for e in distributed.log_history if "eval_dev_ndcg@10" in e][-1]
    here = CrossEncoderRerankingEvaluator(rerank_samples(15, seed=4), name="dev")(reloaded)
    assert last_eval["eval_dev_ndcg@10"] == pytest.approx(here["dev_ndcg@10"], abs=1e-6)
    assert last_eval["eval_dev_map"] == pytest.approx(here["dev_map"], abs=1e-6)


class KillWorkerOnce(TrainerCallback):
    """Rank 1 dies (os._exit) at `step` on the first attempt only (a marker file tells attempts apart)."""

    def __init__(self, step: int, marker: str, steps_log: str) -> None:
        self.step = step
        self.marker = marker
        self.steps_log = steps_log

    def on_step_end(self, args, state, control, **kwargs):
        with open(f"{self.steps_log}.{_rank()}", "a") as f:
            f.write(f"{state.global_step}\n")
        if state.global_step == self.step and _rank() == 1 and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os._exit(1)


def test_killed_worker_is_replaced_and_training_resumes_from_the_last_checkpoint(tmp_path, tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    marker, steps_log = tmp_path / "killed", tmp_path / "steps"
    args = CrossEncoderTrainingArguments(
        str(tmp_path / "out"), max_steps=12, per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=2,
        eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4, save_total_limit=1,
        load_best_model_at_end=True, seed=3, num_workers=2, resources_per_worker={"CPU": 0.5}, max_failures=1,
        disable_tqdm=True,
    )
    result = CrossEncoderTrainer(model, args, train_dataset=make_rows(128, seed=5, tag="man"),
                                 eval_dataset=make_rows(32, seed=6, tag="man"), loss=BinaryCrossEntropyLoss(model),
                                 callbacks=[KillWorkerOnce(5, str(marker), str(steps_log))]).train()

    assert marker.exists()  # the failure did happen
    seen = [int(s) for s in Path(f"{steps_log}.0").read_text().split()]
    # first attempt: steps 1..5, rank 1 dies one step after checkpoint-4 was reported (before the
    # controller's next poll, unless reports wait to be collected); the second attempt restarts after
    # checkpoint-4, not from scratch
    restart = next(i for i in range(1, len(seen)) if seen[i] <= seen[i - 1])
    assert seen[restart] == 5 and seen[-1] == 12
    assert result.global_step == 12
    assert sorted(e["step"] for e in result.log_history if "loss" in e) == list(range(2, 13, 2))
    # best checkpoint by eval_loss (lower is better, ties to the later step) kept by Ray's rotation,
    # together with the latest; its weights are the final model
    evals = {e["step"]: e["eval_loss"] for e in result.log_history if "eval_loss" in e}
    assert sorted(evals) == [4, 8, 12]
    best_step = min(evals, key=lambda s: (evals[s], -s))
    assert result.best_checkpoint.endswith(f"checkpoint-{best_step}")
    kept = sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*"))
    assert kept == sorted({f"checkpoint-{best_step}", "checkpoint-12"})
    best = AutoModelForSequenceClassification.from_pretrained(result.best_checkpoint)
    for name, tensor in best.state_dict().items():
        torch.testing.assert_close(model.hf_model.state_dict()[name], tensor)
    # the final model loads, in raycross and transformers
    reloaded = CrossEncoder(str(tmp_path / "out"), device="cpu")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    pairs = [("man dog", "a dog runs")]
    with torch.no_grad():
        logit = hf(**reloaded.preprocess(pairs)).logits[0, 0]
    assert reloaded.predict(pairs)[0] == pytest.approx(torch.sigmoid(logit).item(), rel=1e-5)


class StopAfter(TrainerCallback):
    """Stops training at `step` (a clean stop: the trainer saves a checkpoint there) and logs every step."""

    def __init__(self, step: int | None, steps_log: str) -> None:
        self.step = step
        self.steps_log = steps_log

    def on_step_end(self, args, state, control, **kwargs):
        with open(f"{self.steps_log}.{_rank()}", "a") as f:
            f.write(f"{state.global_step}\n")
        if state.global_step == self.step:
            control.should_training_stop = True
            control.should_save = True


def test_rerun_with_the_same_output_dir_continues_the_multi_worker_run(tmp_path, tiny_model_path):
    train = make_rows(96, seed=5, tag="man")

    def run(stop: int | None, log: str):
        model = CrossEncoder(str(tiny_model_path), device="cpu")
        args = CrossEncoderTrainingArguments(
            str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=1,
            save_strategy="steps", save_steps=3, seed=3, num_workers=2, resources_per_worker={"CPU": 0.5},
            disable_tqdm=True,
        )
        return CrossEncoderTrainer(model, args, train_dataset=train, loss=BinaryCrossEntropyLoss(model),
                                   callbacks=[StopAfter(stop, str(tmp_path / log))]).train()

    first = run(2, "first")
    assert first.global_step == 2
    second = run(None, "second")
    assert [int(s) for s in (tmp_path / "second.0").read_text().split()] == [3, 4, 5, 6]  # continued, not redone
    assert second.global_step == 6
    assert sorted(e["step"] for e in second.log_history if "loss" in e) == list(range(1, 7))
    CrossEncoder(str(tmp_path / "out"), device="cpu").predict([("man dog", "a dog runs")])
