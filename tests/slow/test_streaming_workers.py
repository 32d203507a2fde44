"""Streamed training on 2 Ray Train workers: rows flow from Ray Data (parquet files) through the window;
every row of every dataset once per epoch over both workers, both workers on the same dataset at every
step, the promised proportions, and a rerun that resumes mid-epoch at the exact batch."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn
from transformers import TrainerCallback

from raycross import CrossEncoder
from raycross.losses import BinaryCrossEntropyLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def ship_this_module_by_value(ray_session):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class DocLog(nn.Module):
    """BCE that appends, per worker, the dataset and documents of every training batch."""

    def __init__(self, model, name: str, log_dir: str) -> None:
        super().__init__()
        self.model, self.inner, self.name, self.log_dir = model, BinaryCrossEntropyLoss(model), name, log_dir

    def forward(self, inputs, labels):
        if torch.is_grad_enabled():
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            with open(Path(self.log_dir) / f"rank{rank}.txt", "a") as f:
                f.write(f"{self.name} {','.join(inputs[1])}\n")
        return self.inner(inputs, labels)

    def validate_columns(self, *args, **kwargs):
        return self.inner.validate_columns(*args, **kwargs)

    def get_config_dict(self):
        return self.inner.get_config_dict()


def _write(path: Path, n: int, tag: str) -> str:
    table = pa.table({"query": [f"a cat {i}" for i in range(n)], "doc": [f"{tag}{i}" for i in range(n)],
                      "label": [float(i % 2) for i in range(n)]})
    pq.write_table(table, path, row_group_size=9)
    return str(path)


def _log(log_dir: Path, rank: int) -> list[tuple[str, list[str]]]:
    lines = (log_dir / f"rank{rank}.txt").read_text().splitlines()
    return [(line.split(" ")[0], line.split(" ")[1].split(",")) for line in lines]


def test_two_workers_stream_every_row_once_per_epoch_on_a_shared_schedule(tmp_path, tiny_model_path):
    data = {"small": _write(tmp_path / "small.parquet", 32, "s"), "big": _write(tmp_path / "big.parquet", 96, "b")}
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    losses = {name: DocLog(model, name, str(log_dir)) for name in data}
    args = CrossEncoderTrainingArguments(
        str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=4, learning_rate=1e-4,
        streaming=True, streaming_window=12, num_workers=2, resources_per_worker={"CPU": 0.5},
        save_strategy="no", report_to=[], logging_steps=1000, seed=5,
    )
    result = CrossEncoderTrainer(model, args, train_dataset=data, loss=losses).train()
    # per worker per epoch: small 16 rows -> 4 batches, big 48 rows -> 12 batches (proportional: 16 steps)
    assert result.global_step == 2 * 16
    logs = [_log(log_dir, r) for r in (0, 1)]
    assert [name for name, _ in logs[0]] == [name for name, _ in logs[1]]  # same dataset at every step
    for epoch in (slice(0, 16), slice(16, 32)):
        steps = [entry for log in logs for entry in log[epoch]]
        assert Counter(name for name, _ in logs[0][epoch]) == {"small": 4, "big": 12}
        for name, n, tag in (("small", 32, "s"), ("big", 96, "b")):
            seen = Counter(d for step_name, docs in steps if step_name == name for d in docs)
            assert seen == Counter(f"{tag}{i}" for i in range(n))  # every row exactly once over both workers


class CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("worker lost")


def test_rerun_resumes_a_streamed_multi_worker_run_mid_epoch(tmp_path, tiny_model_path):
    data = _write(tmp_path / "train.parquet", 64, "d")

    def run(out: Path, log_dir: Path, callbacks=()):
        log_dir.mkdir(exist_ok=True)
        model = CrossEncoder(str(tiny_model_path), device="cpu")
        args = CrossEncoderTrainingArguments(
            str(out), max_steps=6, per_device_train_batch_size=4, learning_rate=1e-4, streaming=True,
            streaming_window=12, num_workers=2, resources_per_worker={"CPU": 0.5}, save_strategy="steps",
            save_steps=3, report_to=[], logging_steps=1000, seed=5,
        )
        CrossEncoderTrainer(model, args, train_dataset=data, loss=DocLog(model, "train", str(log_dir)),
                            callbacks=list(callbacks)).train()

    run(tmp_path / "ref", tmp_path / "ref-log")
    with pytest.raises(Exception, match="worker lost"):
        run(tmp_path / "two", tmp_path / "part1", [CrashAt(5)])  # checkpoint-3: epoch 0, batch 3 of 8
    run(tmp_path / "two", tmp_path / "part2")  # a rerun continues from checkpoint-3
    for rank in (0, 1):
        reference = _log(tmp_path / "ref-log", rank)
        assert len(reference) == 6
        assert _log(tmp_path / "part1", rank)[:3] + _log(tmp_path / "part2", rank) == reference
