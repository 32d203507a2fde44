"""Fault injection, in this process: crafted state files, a second run on the same directory, bad rows,
non-finite steps, corrupt/truncated checkpoints, a full disk, leftovers of killed writes, a kill during
the final export, reruns of a finished run, a Ray address where nothing answers, broken model dirs.

Each test asserts the outcome: the error text, the step resumed from, or weights equal to an
uninterrupted run where that is the promise. The multi-node Ray faults are in tests/slow/test_faults_cluster.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from raycross import CrossEncoder
from raycross.losses import BinaryCrossEntropyLoss, CrossEntropyLoss
from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
from raycross.training.lock import LOCK_FILE, RunLock, RunLockedError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = {"q": ["the dog", "a cat", "the man", "water food"] * 8,
        "d": ["dog play", "the street", "a man run", "food"] * 8,
        "label": [1.0, 0.0, 1.0, 0.0] * 8}


def args_for(out: Path, **kwargs) -> CrossEncoderTrainingArguments:
    base = dict(per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1, save_strategy="steps",
                save_steps=2, max_steps=4, disable_tqdm=True, seed=3, lr_scheduler_type="constant")
    base.update(kwargs)
    return CrossEncoderTrainingArguments(str(out), **base)


def train(model_path: Path, out: Path, rows=ROWS, loss=None, resume=None, **kwargs):
    model = CrossEncoder(str(model_path), device="cpu")
    trainer = CrossEncoderTrainer(model, args_for(out, **kwargs), train_dataset=rows,
                                  loss=loss(model) if loss else None)
    return trainer.train(resume_from_checkpoint=resume), model


def weights(model: CrossEncoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.hf_model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


# ---------------------------------------------------------------------- 1. state files never run code
class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_state_file_is_refused_without_running_it(tmp_path, tiny_model_path):
    out = tmp_path / "out"
    train(tiny_model_path, out)
    marker = tmp_path / "pwned"
    with open(out / "checkpoint-4" / "optimizer.pt", "wb") as f:
        pickle.dump({"state": _Exploit(str(marker))}, f)
    record = json.loads((out / "checkpoint-4" / "raycross_progress.json").read_text())  # a consistent forgery
    record["files"]["optimizer.pt"] = (out / "checkpoint-4" / "optimizer.pt").stat().st_size
    (out / "checkpoint-4" / "raycross_progress.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"optimizer\.pt: refused to load.*would run code"):
        train(tiny_model_path, out, resume=str(out / "checkpoint-4"), max_steps=6)
    assert not marker.exists()
    # the files raycross writes load with weights_only=True
    for name in ("optimizer.pt", "scheduler.pt", "rng_state_0.pth"):
        torch.load(out / "checkpoint-2" / name, weights_only=True)


# ---------------------------------------------------------------------- 2. one run per directory
def test_a_second_run_on_the_same_output_dir_is_refused_naming_the_running_one(tmp_path, tiny_model_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        import psutil

        out.mkdir()
        (out / LOCK_FILE).write_text(json.dumps({
            "host": socket.gethostname(), "pid": holder.pid, "start": psutil.Process(holder.pid).create_time(),
            "since": "2026-01-01T00:00:00"}))
        with pytest.raises(RunLockedError, match=rf"in use by another raycross run \(pid {holder.pid}"):
            train(tiny_model_path, out)
        assert not (out / "checkpoint-2").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    result, _ = train(tiny_model_path, out)
    assert result.global_step == 4 and not (out / LOCK_FILE).exists()


def test_two_trainers_in_one_process_cannot_share_a_directory(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="in use by another trainer in this process"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: free again
        pass


def test_a_run_directory_on_a_uri_gets_an_advisory_lock(tmp_path, tiny_model_path, monkeypatch, caplog):
    from raycross.training import lock as lock_module
    from raycross.training.lock import UriRunLock

    monkeypatch.setattr(lock_module, "CONFIRM_S", 0.05)
    uri = f"file://{tmp_path}/runs/exp"
    record = tmp_path / "runs" / "exp" / LOCK_FILE
    with UriRunLock(uri):
        assert json.loads(record.read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match="in use by another trainer in this process"):
            UriRunLock(uri).acquire()
    assert not record.exists()  # released
    # another host's fresh lock refuses, naming it; a stale one (no heartbeat) is taken over with a warning
    record.write_text(json.dumps({"host": "other", "pid": 7, "token": "x", "beat": time.time(), "since": "then"}))
    with pytest.raises(RunLockedError, match=r"in use by another raycross run \(pid 7 on host 'other'"):
        UriRunLock(uri).acquire()
    record.write_text(json.dumps({"host": "other", "pid": 7, "token": "x", "beat": time.time() - 400}))
    with caplog.at_level(logging.WARNING), UriRunLock(uri):
        assert any("Taking over the stale lock" in r.getMessage() for r in caplog.records)
    # a run that writes the lock while this one confirms it keeps it: this one is refused
    real_sleep = time.sleep

    def rival_writes(seconds):
        record.write_text(json.dumps({"host": "rival", "pid": 9, "token": "y", "beat": time.time()}))
        real_sleep(seconds)

    monkeypatch.setattr(lock_module.time, "sleep", rival_writes)
    with pytest.raises(RunLockedError, match="pid 9 on host 'rival'"):
        UriRunLock(uri).acquire()
    monkeypatch.setattr(lock_module.time, "sleep", real_sleep)
    # the trainer takes this lock for a storage_path URI (and the plain lock for output_dir)
    args = CrossEncoderTrainingArguments(str(tmp_path / "out"), storage_path=f"file://{tmp_path}/runs", run_name="exp2",
                                         num_workers=1)
    trainer = CrossEncoderTrainer(CrossEncoder(str(tiny_model_path), device="cpu"), args, train_dataset=ROWS)
    with trainer._run_locks():
        assert (tmp_path / "runs" / "exp2" / LOCK_FILE).exists() and (tmp_path / "out" / LOCK_FILE).exists()
        with pytest.raises(RunLockedError, match="run directory \\(storage_path/run_name\\)"):
            UriRunLock(f"file://{tmp_path}/runs/exp2", "run directory (storage_path/run_name)").acquire()
    assert not (tmp_path / "runs" / "exp2" / LOCK_FILE).exists()


# ---------------------------------------------------------------------- 3. every row checked
@pytest.mark.parametrize("column, value, error, message", [
    ("label", float("nan"), ValueError, "column 'label', row 5: the label is NaN or infinite"),
    ("label", float("inf"), ValueError, "column 'label', row 5: the label is NaN or infinite"),
    ("label", None, ValueError, "column 'label', row 5: the label is None"),
    ("d", None, ValueError, "column 'd', row 5: the text is None"),
    ("q", 7, TypeError, "column 'q', row 5: mixed types in one column: int 7"),
    ("label", "yes", TypeError, "column 'label', row 5: mixed types in one column: str 'yes'"),
])
def test_bad_rows_are_named_before_training(tmp_path, tiny_model_path, column, value, error, message):
    rows = {k: list(v) for k, v in ROWS.items()}
    rows[column][5] = value
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    with pytest.raises(error, match="train_dataset: " + message.replace("(", r"\(").replace(")", r"\)")):
        CrossEncoderTrainer(model, args_for(tmp_path / "out"), train_dataset=rows)


def test_out_of_range_class_labels_name_the_row_and_empty_strings_are_fine(tmp_path, tiny_model_path_3labels):
    model = CrossEncoder(str(tiny_model_path_3labels), device="cpu")
    rows = {"q": ["a", "", "b", "c"], "d": ["x", "y", "", "z"], "label": [0, 2, 1, 0]}
    CrossEncoderTrainer(model, args_for(tmp_path / "ok"), train_dataset=rows, loss=CrossEntropyLoss(model))
    rows["label"][3] = 3
    with pytest.raises(ValueError, match=r"range over \[0, 3\].*num_labels=3.*first at row 3: 3"):
        CrossEncoderTrainer(model, args_for(tmp_path / "out"), train_dataset=rows, loss=CrossEntropyLoss(model))
    with pytest.raises(ValueError, match=r"eval_dataset: column 'd', row 1: the text is None"):
        CrossEncoderTrainer(model, args_for(tmp_path / "out"), train_dataset={**rows, "label": [0, 1, 2, 0]},
                            eval_dataset={"q": ["a", "b"], "d": ["x", None], "label": [0, 1]},
                            loss=CrossEntropyLoss(model))


def test_streamed_batches_are_checked_with_the_row_offset():
    import pyarrow as pa

    from raycross.data.rows import RowChecker

    checker = RowChecker("train_dataset", ["q", "d"], "label")
    checker.check(pa.table({"q": ["a", ""], "d": ["b", "c"], "label": [1.0, 0.0]}), offset=0)
    with pytest.raises(ValueError, match=r"train_dataset: column 'd', row 1001: a text in the list is None"):
        RowChecker("train_dataset", ["q", "d"], None).check(
            pa.table({"q": ["a", "b"], "d": [["x"], ["y", None]]}), offset=1000)


# ---------------------------------------------------------------------- 4. non-finite loss or gradients
class NaNAtCall(BinaryCrossEntropyLoss):
    """BCE whose loss turns NaN from the `at`-th call on."""

    def __init__(self, model, at: int = 3) -> None:
        super().__init__(model)
        self.calls, self.at = 0, at

    def forward(self, inputs, labels):
        self.calls += 1
        loss = super().forward(inputs, labels)
        return loss * float("nan") if self.calls >= self.at else loss


def test_a_non_finite_loss_stops_naming_the_step_and_no_nan_weights_are_written(tmp_path, tiny_model_path):
    out = tmp_path / "out"
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    trainer = CrossEncoderTrainer(model, args_for(out, save_steps=2), train_dataset=ROWS, loss=NaNAtCall(model, at=3))
    with pytest.raises(FloatingPointError, match=r"step 3: non-finite training values \(loss nan.*last checkpoint is "
                                                 r".*checkpoint-2.*skip_nonfinite_steps=True"):
        trainer.train()
    assert all(torch.isfinite(v).all() for v in weights(model).values())
    assert [p.name for p in out.iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-2"]
    saved = CrossEncoder(str(out / "checkpoint-2"), device="cpu")
    assert all(torch.isfinite(v).all() for v in weights(saved).values())


def test_skip_nonfinite_steps_skips_and_logs_each(tmp_path, tiny_model_path, caplog):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    loss = NaNAtCall(model, at=3)
    trainer = CrossEncoderTrainer(model, args_for(tmp_path / "out", skip_nonfinite_steps=True), train_dataset=ROWS,
                                  loss=loss)
    with caplog.at_level(logging.WARNING, logger="raycross.training.loop"):
        result = trainer.train()
    skipped = [r.getMessage() for r in caplog.records if "step skipped" in r.getMessage()]
    assert result.global_step == 4 and len(skipped) == 2 and skipped[0].startswith("step 3:")
    assert all(torch.isfinite(v).all() for v in weights(model).values())
    two = CrossEncoder(str(tmp_path / "out" / "checkpoint-2"), device="cpu")
    assert_same_weights(weights(two), weights(model))  # steps 3 and 4 changed nothing


# ---------------------------------------------------------------------- 5. corrupt checkpoints, full disk, leftovers
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_model_path, caplog):
    out = tmp_path / "out"
    train(tiny_model_path, out, max_steps=4)
    weights_file = out / "checkpoint-4" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"resume_from_checkpoint=.*checkpoint-4.*model\.safetensors: truncated or corrupt"):
        train(tiny_model_path, tmp_path / "other", resume=str(out / "checkpoint-4"), max_steps=6)
    with caplog.at_level(logging.WARNING):
        result, resumed = train(tiny_model_path, out, max_steps=6)
    assert any("Skipping checkpoint" in r.getMessage() and "model.safetensors" in r.getMessage() for r in caplog.records)
    assert result.global_step == 6
    _, uninterrupted = train(tiny_model_path, tmp_path / "straight", max_steps=6)
    assert_same_weights(weights(resumed), weights(uninterrupted))


def test_a_corrupt_progress_record_names_the_file(tmp_path, tiny_model_path):
    out = tmp_path / "out"
    train(tiny_model_path, out, max_steps=2)
    (out / "checkpoint-2" / "raycross_progress.json").write_text('{"epoch": 0, "micro')
    with pytest.raises(ValueError, match=r"no checkpoint of the run could be loaded.*raycross_progress\.json: corrupt or truncated"):
        train(tiny_model_path, out, max_steps=4)


def test_a_full_disk_says_so_and_keeps_earlier_checkpoints(tmp_path, tiny_model_path, monkeypatch):
    import raycross.training.loop as loop

    real, calls = loop.save_state, []

    def full_disk(obj, path):
        calls.append(path)
        if Path(path).name == "optimizer.pt" and len([c for c in calls if Path(c).name == "optimizer.pt"]) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(obj, path)

    monkeypatch.setattr(loop, "save_state", full_disk)
    out = tmp_path / "out"
    with pytest.raises(OSError, match=r"no space left on the device while writing checkpoint checkpoint-4 .*out/checkpoint-4"):
        train(tiny_model_path, out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".raycross")) == ["checkpoint-2"]
    monkeypatch.setattr(loop, "save_state", real)
    result, _ = train(tiny_model_path, out)  # space freed: resumes from checkpoint-2
    assert result.global_step == 4


def test_leftovers_of_killed_writes_are_cleaned_at_the_next_start(tmp_path, tiny_model_path):
    out = tmp_path / "out"
    train(tiny_model_path, out, max_steps=2)
    (out / ".tmp-checkpoint-4-deadbeef").mkdir()
    (out / ".tmp-checkpoint-4-deadbeef" / "model.safetensors").write_bytes(b"half")
    os.replace(out / "checkpoint-2", out / ".old-checkpoint-2-cafecafe")  # killed between the two renames
    (tmp_path / ".out.export-0badf00d").mkdir()
    result, _ = train(tiny_model_path, out, max_steps=4)
    assert result.global_step == 4
    names = sorted(p.name for p in out.iterdir())
    assert "checkpoint-2" in names and not [n for n in names if n.startswith((".tmp-", ".old-"))]
    assert not (tmp_path / ".out.export-0badf00d").exists()


# ---------------------------------------------------------------------- 6. the final export as a whole
_EXPORT = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("export", sys.argv[3])  # stdlib only: no torch import per kill
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
export_directory = module.export_directory
out, tag = Path(sys.argv[1]), sys.argv[2]
def write(tmp):
    for i in range(6):
        (tmp / f"file{i}.txt").write_text(tag)
        time.sleep(0.02)
print("ready", flush=True)
export_directory(out, write)
"""


def _model_files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if p.name.startswith("file")}


def test_a_kill_at_any_moment_of_the_export_leaves_the_old_or_the_new_model(tmp_path):
    import raycross.training.export as export_module
    from raycross.training.export import export_directory, recover_export

    out = tmp_path / "model"

    def old(tmp):
        for i in range(3):
            (tmp / f"file{i}.txt").write_text("old")

    export_directory(out, old)
    (out / "checkpoint-1").mkdir()
    (out / "checkpoint-1" / "w.bin").write_text("ckpt")
    script = tmp_path / "export.py"
    script.write_text(_EXPORT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for delay in (0.0, 0.02, 0.05, 0.08, 0.11, 0.14, 0.2, 0.5):
        if set(_model_files(out).values()) == {"new"}:
            export_directory(out, old)
        proc = subprocess.Popen([sys.executable, str(script), str(out), "new", export_module.__file__], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        recover_export(out)  # what the next start does
        files = _model_files(out)
        kind = set(files.values())
        assert kind in ({"old"}, {"new"}), files
        assert set(files) == {f"file{i}.txt" for i in range(3 if kind == {"old"} else 6)}
        assert (out / "checkpoint-1" / "w.bin").read_text() == "ckpt"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]


def test_a_failed_export_leaves_the_previous_model(tmp_path):
    from raycross.training.export import export_directory

    out = tmp_path / "model"
    export_directory(out, lambda tmp: (tmp / "config.json").write_text("old"))

    def failing(tmp):
        (tmp / "config.json").write_text("new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="no space left on the device while writing the final model"):
        export_directory(out, failing)
    assert (out / "config.json").read_text() == "old"


# ---------------------------------------------------------------------- 7. reruns of a finished run
def test_a_finished_run_continues_with_more_steps_and_says_when_there_is_nothing_to_do(tmp_path, tiny_model_path,
                                                                                        caplog):
    out = tmp_path / "out"
    train(tiny_model_path, out, max_steps=4)
    with caplog.at_level(logging.WARNING):
        result, _ = train(tiny_model_path, out, max_steps=4)
    assert result.global_step == 4
    assert any("Nothing to train" in r.getMessage() and "max_steps=4" in r.getMessage() for r in caplog.records)
    result, continued = train(tiny_model_path, out, max_steps=8)
    assert result.global_step == 8
    _, straight = train(tiny_model_path, tmp_path / "straight", max_steps=8)
    assert_same_weights(weights(continued), weights(straight))


class _Steps(TrainerCallback):
    """Records the global step at every optimizer step of one train() call."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def _train_counting(model_path: Path, out: Path, **kwargs) -> tuple[Any, CrossEncoder, list[int]]:
    model = CrossEncoder(str(model_path), device="cpu")
    counter = _Steps()
    trainer = CrossEncoderTrainer(model, args_for(out, **kwargs), train_dataset=ROWS, callbacks=[counter])
    return trainer.train(), model, counter.steps


@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streamed"])
@pytest.mark.parametrize("first, more", [
    (dict(max_steps=4), dict(max_steps=8)),  # stops mid-epoch (8 batches per epoch), then 4 more steps
    (dict(max_steps=-1, num_train_epochs=1), dict(max_steps=-1, num_train_epochs=2)),  # a whole epoch more
], ids=["max_steps", "epochs"])
def test_a_finished_run_grown_trains_exactly_the_added_steps_streamed_or_not(tmp_path, tiny_model_path, caplog,
                                                                             streaming, first, more):
    # item 7 for both data paths (a report said streamed data did not continue: that was an older
    # `progress.finished` check, gone since the rerun rule; this pins it)
    out = tmp_path / "out"
    result, model, steps = _train_counting(tiny_model_path, out, streaming=streaming, **first)
    done = result.global_step
    assert steps == list(range(1, done + 1))
    trained = weights(model)
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
    with caplog.at_level(logging.INFO):
        result, model, steps = _train_counting(tiny_model_path, out, streaming=streaming, **first)
    assert (result.global_step, steps) == (done, [])
    assert any("Nothing to train" in r.getMessage() for r in caplog.records)
    assert_same_weights(weights(model), trained)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == checkpoints
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result, continued, steps = _train_counting(tiny_model_path, out, streaming=streaming, **more)
    total = 2 * done
    assert steps == list(range(done + 1, total + 1)) and result.global_step == total
    assert any(f"at step {done} " in r.getMessage() and "Resumed" in r.getMessage() for r in caplog.records)
    _, straight, _ = _train_counting(tiny_model_path, tmp_path / "straight", streaming=streaming, **more)
    assert_same_weights(weights(continued), weights(straight))


# ---------------------------------------------------------------------- 8. a Ray address where nothing answers
def test_ray_address_pointing_at_nothing_fails_fast_with_a_clear_error(tmp_path, tiny_model_path, monkeypatch):
    import socket

    import ray

    if ray.is_initialized():
        pytest.skip("a Ray instance is already connected in this process")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    trainer = CrossEncoderTrainer(model, args_for(tmp_path / "out", num_workers=1), train_dataset=ROWS)
    with pytest.raises(ConnectionError, match=rf"no Ray cluster answers at RAY_ADDRESS / address='127.0.0.1:{port}'"):
        trainer.train()
    assert not ray.is_initialized()


# ---------------------------------------------------------------------- 9. broken model directories
def test_broken_model_directories_get_clear_errors(tmp_path, tiny_model_path):
    import shutil

    broken = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_model_path, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="holds no tokenizer files"):
        CrossEncoder(str(broken), device="cpu")
    with pytest.raises(TypeError, match="activation_fn: expected a callable.*found int 5"):
        CrossEncoder(str(tiny_model_path), device="cpu", activation_fn=5)
    stored = tmp_path / "bad_activation"
    shutil.copytree(tiny_model_path, stored)
    (stored / "config_sentence_transformers.json").write_text(json.dumps({"activation_fn": "torch.nn.NoSuchThing"}))
    with pytest.raises(ValueError, match="activation_fn 'torch.nn.NoSuchThing' stored with the model .* cannot be built"):
        CrossEncoder(str(stored), device="cpu")
    (stored / "config_sentence_transformers.json").write_text(json.dumps({"activation_fn": "torch.Tensor"}))
    with pytest.raises(TypeError, match="activation_fn 'torch.Tensor' stored with the model .* is not callable"):
        CrossEncoder(str(stored), device="cpu")
