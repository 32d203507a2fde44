"""Trainer inputs that involve Ray without Ray Train workers: a Ray Dataset trained in-process, and a
cluster too small for the requested workers (refused before any worker starts)."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross import CrossEncoder
from raycross.losses import BinaryCrossEntropyLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

WORDS = "the man woman dog cat water food house car street city play run walk".split()


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        passage = rng.choices(WORDS, k=4)
        out.append({"query": " ".join(rng.choices(WORDS, k=3)), "passage": " ".join(passage),
                    "label": int("dog" in passage)})
    return out


def test_ray_dataset_and_parquet_file_train_in_process(ray_session, tmp_path, tiny_model_path):
    import ray.data

    train = ray.data.from_items(make_rows(40, seed=1))
    eval_path = tmp_path / "eval.parquet"
    pq.write_table(pa.Table.from_pylist(make_rows(16, seed=2)), eval_path)
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    args = CrossEncoderTrainingArguments(str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=8,
                                         eval_strategy="epoch", save_strategy="no", logging_steps=1,
                                         disable_tqdm=True)
    result = CrossEncoderTrainer(model, args, train_dataset=train, eval_dataset=str(eval_path),
                                 loss=BinaryCrossEntropyLoss(model)).train()
    assert result.global_step == 5
    assert [e["step"] for e in result.log_history if "eval_loss" in e] == [5]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_too_few_cluster_resources_are_refused_before_workers_start(ray_session, tmp_path, tiny_model_path,
                                                                    monkeypatch):
    import ray.train.torch

    def no_trainer(*args, **kwargs):
        raise AssertionError("a TorchTrainer was created")

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", no_trainer)
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    total = ray_session.cluster_resources()["CPU"]
    args = CrossEncoderTrainingArguments(str(tmp_path / "out"), num_workers=2, resources_per_worker={"CPU": total},
                                         save_strategy="no")
    trainer = CrossEncoderTrainer(model, args, train_dataset=make_rows(8, seed=3))
    with pytest.raises(ValueError, match=rf"needs {2 * total:g} CPU, but the Ray cluster has {total:g}"):
        trainer.train()
    # streaming workers that fit but hold every CPU would starve Ray Data's read tasks (no first batch ever)
    args = CrossEncoderTrainingArguments(str(tmp_path / "out"), num_workers=2, resources_per_worker={"CPU": total / 2},
                                         save_strategy="no", streaming=True)
    trainer = CrossEncoderTrainer(model, args, train_dataset=make_rows(8, seed=3))
    with pytest.raises(ValueError, match=rf"leaving 0 for Ray Data.*resources_per_worker={{'CPU': {(total - 1) / 2:g}}}"):
        trainer.train()


def test_ray_dataset_streams_in_process_every_row_once(ray_session, tmp_path, tiny_model_path):
    import ray.data

    from raycross.losses import BinaryCrossEntropyLoss

    seen: list[str] = []

    class Recording(BinaryCrossEntropyLoss):
        def forward(self, inputs, labels):
            seen.extend(inputs[1])
            return super().forward(inputs, labels)

    rows = [{"query": f"a cat {i}", "doc": f"doc{i}", "label": float(i % 2)} for i in range(30)]
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    args = CrossEncoderTrainingArguments(str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=4,
                                         streaming=True, streaming_window=8, save_strategy="no", report_to=[])
    trainer = CrossEncoderTrainer(model, args, train_dataset=ray.data.from_items(rows), loss=Recording(model))
    assert trainer.streamed == {"train": 30}
    assert trainer.train().global_step == 8
    assert sorted(seen) == sorted(r["doc"] for r in rows)
