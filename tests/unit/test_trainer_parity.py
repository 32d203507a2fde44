"""Trainer arguments and hooks of sentence-transformers 6.2 / transformers: every lr_scheduler_type and optim
(chosen by transformers itself), optimizers / optimizer_cls_and_kwargs, learning_rate_mapping, report_to
wandb (offline) and mlflow (local file store) with the logged metrics read back, every TrainerCallback
event with its keyword arguments, model_init and compute_metrics."""

from __future__ import annotations

import glob
import json
import struct
import time

import numpy as np
import pytest
import torch
import transformers
from transformers import TrainerCallback
from transformers.trainer_utils import SchedulerType as HFSchedulerType
from transformers.training_args import OptimizerNames

from raycross import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
from raycross.training.optim import build_optimizer, create_scheduler

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = {"a": ["a man", "a dog", "the cat", "a car", "a child", "the water", "red", "blue"],
        "b": ["a woman", "a cat", "a dog", "red", "a boy", "food", "green", "white"],
        "label": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]}
SCHEDULER_KWARGS = {"cosine_with_min_lr": {"min_lr": 1e-6}, "cosine_warmup_with_min_lr": {"min_lr": 1e-6},
                    "warmup_stable_decay": {"num_decay_steps": 2}}


def _args(tmp_path, **kwargs):
    base = dict(max_steps=6, per_device_train_batch_size=4, logging_steps=1, save_strategy="no", prefetch_batches=0,
                learning_rate=1e-3)
    return CrossEncoderTrainingArguments(str(tmp_path / "out"), **{**base, **kwargs})


@pytest.mark.parametrize("kind", [m.value for m in HFSchedulerType if m.value not in ("reduce_lr_on_plateau", "greedy")])
def test_every_scheduler_is_transformers_own(kind):
    kwargs = SCHEDULER_KWARGS.get(kind, {})
    ours_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ours = create_scheduler(ours_opt, kind, 2, 10, kwargs)
    reference = transformers.get_scheduler(kind, optimizer=ref_opt, num_warmup_steps=2, num_training_steps=10,
                                           scheduler_specific_kwargs=kwargs)
    seen, expected = [], []
    for _ in range(10):
        seen.append(ours.get_last_lr()[0])
        expected.append(reference.get_last_lr()[0])
        ours_opt.step(), ref_opt.step(), ours.step(), reference.step()
    assert seen == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["cosine_with_restarts", "polynomial", "inverse_sqrt", "warmup_stable_decay"])
def test_training_logs_the_schedules_learning_rates(tiny_model_path, tmp_path, kind):
    args = _args(tmp_path, lr_scheduler_type=kind, warmup_steps=2, lr_scheduler_kwargs=SCHEDULER_KWARGS.get(kind))
    result = CrossEncoderTrainer(CrossEncoder(str(tiny_model_path), device="cpu"), args, train_dataset=DATA).train()
    logged = [e["learning_rate"] for e in result.log_history if "learning_rate" in e]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    reference = transformers.get_scheduler(kind, optimizer=opt, num_warmup_steps=2, num_training_steps=6,
                                           scheduler_specific_kwargs=SCHEDULER_KWARGS.get(kind, {}))
    expected = []
    for _ in range(6):
        opt.step()
        reference.step()
        expected.append(reference.get_last_lr()[0])
    assert logged[:6] == pytest.approx(expected)


def test_reduce_lr_on_plateau_steps_on_the_eval_loss(tiny_model_path, tmp_path):
    args = _args(tmp_path, lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="steps", eval_steps=1,
                 lr_scheduler_kwargs={"patience": 0, "factor": 0.5}, learning_rate=0.0)
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    result = CrossEncoderTrainer(model, args, train_dataset=DATA, eval_dataset=DATA).train()
    assert result.metrics["eval_loss"] > 0 and "learning_rate" in result.log_history[0]
    with pytest.raises(ValueError, match="lr_scheduler_type"):
        CrossEncoderTrainingArguments("o", lr_scheduler_type="cosine_annealing")


def _hf_choice(name):
    args = transformers.TrainingArguments("unused", optim=name, learning_rate=1e-3, weight_decay=0.01)
    return transformers.Trainer.get_optimizer_cls_and_kwargs(args, torch.nn.Linear(2, 1))


@pytest.mark.parametrize("name", [m.value for m in OptimizerNames])
def test_every_optim_is_chosen_by_transformers(name, tmp_path):
    try:
        expected_cls, expected_kwargs = _hf_choice(name)
    except Exception as exc:  # an optional dependency (bitsandbytes, apex, galore, ...) or a setting it needs
        with pytest.raises(type(exc)):
            build_optimizer(torch.nn.Linear(2, 1), _args(tmp_path, optim=name))
        return
    args = _args(tmp_path, optim=name, weight_decay=0.01)
    try:
        optimizer = build_optimizer(torch.nn.Linear(2, 1), args)
    except Exception as exc:  # the optimizer class itself refuses these groups (as in transformers' create_optimizer)
        with pytest.raises(type(exc)):
            group = [{"params": list(torch.nn.Linear(2, 1).parameters())}]
            expected_cls(expected_kwargs.pop("optimizer_dict", expected_kwargs.pop("params", group)), **expected_kwargs)
        return
    if not any(k in expected_kwargs for k in ("params", "model", "optimizer_dict")):
        assert type(optimizer) is expected_cls or (isinstance(expected_cls, type) and isinstance(optimizer, expected_cls))


@pytest.mark.parametrize("name", ["sgd", "adafactor", "adamw_torch", "rmsprop"])
def test_training_with_other_optimizers(tiny_model_path, tmp_path, name):
    seen = {}

    class Grab(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            seen["optimizer"] = optimizer

    args = _args(tmp_path, optim=name, max_steps=2)
    result = CrossEncoderTrainer(CrossEncoder(str(tiny_model_path), device="cpu"), args, train_dataset=DATA,
                                 callbacks=[Grab()]).train()
    assert np.isfinite(result.training_loss)
    assert type(seen["optimizer"]) is _hf_choice(name)[0]


def test_optimizers_and_optimizer_cls_and_kwargs(tiny_model_path, tmp_path):
    seen = {}

    class Grab(TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            seen.setdefault("lrs", []).append(optimizer.param_groups[0]["lr"])
            seen["optimizer"], seen["scheduler"] = optimizer, lr_scheduler

    model = CrossEncoder(str(tiny_model_path), device="cpu")
    optimizer = torch.optim.SGD(model.hf_model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    CrossEncoderTrainer(model, _args(tmp_path, max_steps=3), train_dataset=DATA, callbacks=[Grab()],
                        optimizers=(optimizer, scheduler)).train()
    assert seen["optimizer"] is optimizer and seen["scheduler"] is scheduler
    assert seen["lrs"] == pytest.approx([0.25, 0.125, 0.0625])
    seen.clear()
    CrossEncoderTrainer(CrossEncoder(str(tiny_model_path), device="cpu"), _args(tmp_path / "b", max_steps=2),
                        train_dataset=DATA, callbacks=[Grab()],
                        optimizer_cls_and_kwargs=(torch.optim.Adagrad, {"lr": 0.01})).train()
    assert type(seen["optimizer"]) is torch.optim.Adagrad
    with pytest.raises(RuntimeError, match="incompatible"):
        CrossEncoderTrainer(model, _args(tmp_path), train_dataset=DATA, optimizers=(optimizer, None),
                            optimizer_cls_and_kwargs=(torch.optim.SGD, {}))
    with pytest.raises(ValueError, match="optimizer_cls_and_kwargs"):
        CrossEncoderTrainer(model, _args(tmp_path, num_workers=2), train_dataset=DATA, optimizers=(optimizer, None))


def test_learning_rate_mapping_groups_like_st(tiny_model_path, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer as STTrainer
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments as STArgs
    import datasets

    mapping = {r"classifier\.": 1e-2, r"encoder\.layer\.1\.": 5e-4}
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    ours = build_optimizer(model.hf_model, _args(tmp_path, learning_rate_mapping=mapping, weight_decay=0.01,
                                                 optim="adamw_torch"))
    st_trainer = STTrainer(STCrossEncoder(str(tiny_model_path), device="cpu"),
                           STArgs(str(tmp_path / "st"), learning_rate=1e-3, learning_rate_mapping=mapping,
                                  weight_decay=0.01, optim="adamw_torch", report_to="none"),
                           train_dataset=datasets.Dataset.from_dict(DATA))
    theirs = st_trainer.create_optimizer()

    def summary(optimizer):
        return sorted((g.get("lr"), g["weight_decay"], sum(p.numel() for p in g["params"]))
                      for g in optimizer.param_groups if g["params"])

    assert summary(ours) == summary(theirs)
    with pytest.raises(ValueError, match="no parameters found matching the pattern 'nothing"):
        build_optimizer(model.hf_model, _args(tmp_path, learning_rate_mapping={"nothing": 1.0}))


def _wandb_history(run_dir):
    """History rows of an offline wandb run, read from its .wandb file (a leveldb-style record log)."""
    from wandb.proto import wandb_internal_pb2

    data = open(glob.glob(f"{run_dir}/run-*.wandb")[0], "rb").read()
    pos, records, pending, block = 7, [], b"", 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            pos += left - 7
        elif kind == 1:
            records.append(chunk)
        elif kind in (2, 3):
            pending = (pending if kind == 3 else b"") + chunk
        elif kind == 4:
            records.append(pending + chunk)
    rows = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_report_to_wandb_offline_and_mlflow_file_store(tiny_model_path, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)
    args = _args(tmp_path, max_steps=4, report_to=["wandb", "mlflow"], run_name="parity-run", eval_strategy="steps",
                 eval_steps=2)
    result = CrossEncoderTrainer(CrossEncoder(str(tiny_model_path), device="cpu"), args, train_dataset=DATA,
                                 eval_dataset=DATA).train()
    run_dir = wandb.run.dir.rsplit("/files", 1)[0]
    wandb.finish()
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    eval_losses = [e["eval_loss"] for e in result.log_history if "eval_loss" in e]
    rows = _wandb_history(run_dir)
    for _ in range(60):  # wandb-core may still be writing the run file when finish() returns on a busy machine
        if len([r for r in rows if "train/loss" in r]) >= len(losses):
            break
        time.sleep(1)
        rows = _wandb_history(run_dir)
    # by step: the record order in the file is wandb-core's
    train_rows = sorted((r["train/global_step"], r["train/loss"]) for r in rows if "train/loss" in r)
    eval_rows = sorted((r["train/global_step"], r["eval/loss"]) for r in rows if "eval/loss" in r)
    assert [step for step, _ in train_rows] == [1, 2, 3, 4] and [step for step, _ in eval_rows] == [2, 4]
    assert [loss for _, loss in train_rows] == pytest.approx(losses)
    assert [loss for _, loss in eval_rows] == pytest.approx(eval_losses)
    client = mlflow.tracking.MlflowClient(f"file://{tmp_path}/mlruns")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_name == "parity-run" and run.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == pytest.approx(losses)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_loss")] == [2, 4]
    assert run.data.params["learning_rate"] == "0.001"


class Recorder(TrainerCallback):
    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            def record(args, state, control, **kwargs):
                self.events.append((name, kwargs))
            return record
        return super().__getattribute__(name)


def test_every_callback_event_with_its_keyword_arguments_like_st(tiny_model_path, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer as STTrainer
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments as STArgs
    import datasets

    ours, theirs = Recorder(), Recorder()
    CrossEncoderTrainer(CrossEncoder(str(tiny_model_path), device="cpu"),
                        _args(tmp_path, max_steps=4, gradient_accumulation_steps=2, eval_strategy="steps", eval_steps=2,
                              save_strategy="steps", save_steps=2),
                        train_dataset=DATA, eval_dataset=DATA, callbacks=[ours]).train()
    STTrainer(STCrossEncoder(str(tiny_model_path), device="cpu"),
              STArgs(str(tmp_path / "st"), max_steps=4, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                     logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                     report_to="none", disable_tqdm=True),
              train_dataset=datasets.Dataset.from_dict(DATA), eval_dataset=datasets.Dataset.from_dict(DATA),
              callbacks=[theirs]).train()
    prediction_events = {"on_prediction_step", "on_predict"}  # transformers' eval loop internals
    names_ours = {n for n, _ in ours.events}
    names_theirs = {n for n, _ in theirs.events} - prediction_events
    assert names_theirs <= names_ours, names_theirs - names_ours
    for name, kwargs in ours.events:
        assert {"model", "optimizer", "lr_scheduler", "processing_class"} <= set(kwargs), name
    assert all("logs" in kw for n, kw in ours.events if n == "on_log")
    assert all("metrics" in kw and "eval_loss" in kw["metrics"] for n, kw in ours.events if n == "on_evaluate")
    count = lambda events, name: sum(1 for n, _ in events if n == name)  # noqa: E731
    for name in ("on_step_end", "on_substep_end", "on_optimizer_step", "on_pre_optimizer_step", "on_evaluate",
                 "on_save", "on_init_end"):
        assert count(ours.events, name) == count(theirs.events, name), name


def test_model_init_builds_a_fresh_seeded_model_for_each_train(tiny_model_path, tmp_path):
    calls = []

    def model_init():
        calls.append(1)
        return CrossEncoder(str(tiny_model_path), device="cpu")

    trainer = CrossEncoderTrainer(None, _args(tmp_path, max_steps=3), train_dataset=DATA, model_init=model_init)
    first = trainer.train()
    second = trainer.train(resume_from_checkpoint=False)
    assert len(calls) == 3  # __init__, then one per train()
    assert second.training_loss == pytest.approx(first.training_loss)
    assert trainer.losses["train"].model is trainer.model
    with pytest.raises(RuntimeError, match="model_init should not return None"):
        CrossEncoderTrainer(None, _args(tmp_path), train_dataset=DATA, model_init=lambda: None)


def test_compute_metrics_on_eval_logits(tiny_model_path, tmp_path):
    received = []

    def accuracy(prediction):
        received.append(prediction)
        return {"accuracy": float(((prediction.predictions > 0) == (prediction.label_ids > 0.5)).mean())}

    model = CrossEncoder(str(tiny_model_path), device="cpu")
    trainer = CrossEncoderTrainer(model, _args(tmp_path, max_steps=2, eval_strategy="steps", eval_steps=2),
                                  train_dataset=DATA, eval_dataset={"dev": DATA}, compute_metrics=accuracy)
    result = trainer.train()
    assert "eval_dev_accuracy" in result.metrics
    logits = model.predict(list(zip(DATA["a"], DATA["b"])), activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(received[-1].predictions, logits, atol=1e-5)
    np.testing.assert_array_equal(received[-1].label_ids, DATA["label"])
    assert trainer.evaluate()["eval_dev_accuracy"] == pytest.approx(float(((logits > 0) == np.array(DATA["label"])).mean()))
