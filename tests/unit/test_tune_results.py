"""raycross.tune results: rows from trial records, statuses, table, CSV, best-model export (no Ray cluster)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from raycross.tuning.results import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    STOPPED,
    SweepResult,
    export_model,
    format_table,
    order_rows,
    short_error,
    trainer_history,
    trial_row,
    write_csv,
)
from raycross.tuning.trial import TRIAL_FILE, TrialSetup, TuneReporter, build_loss

METRIC = "eval_dev_ndcg@10"


def _write_state(path: Path, log_history: list[dict]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "trainer_state.json").write_text(json.dumps({"log_history": log_history}))
    (path / "raycross_progress.json").write_text("{}")  # marks a complete checkpoint


def _trial(tmp_path: Path, name: str, evals: list[tuple[int, float]], kept: list[int], completed: bool) -> Path:
    """A trial directory as the trainer leaves it: checkpoints `kept` and each one's log history."""
    trial = tmp_path / name
    history = [{"step": s, METRIC: v, "eval_runtime": 0.1} for s, v in evals]
    for step in kept:
        _write_state(trial / "train" / f"checkpoint-{step}", [h for h in history if h["step"] <= step])
    if completed:
        (trial / "train" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
        (trial / TRIAL_FILE).write_text(json.dumps({"completed": True, "global_step": evals[-1][0]}))
    return trial


def _result(trial: Path, progress: list[dict] | None = None, error: Exception | None = None, time_s: float = 5.0):
    frame = pd.DataFrame(progress) if progress else None
    last = dict(progress[-1]) if progress else {}
    last.update(time_total_s=time_s, trial_id=trial.name.removeprefix("trial_"))
    return SimpleNamespace(path=str(trial), metrics=last, config={}, error=error, metrics_dataframe=frame)


def test_trainer_history_spans_resumed_attempts_and_links_kept_checkpoints(tmp_path):
    trial = _trial(tmp_path, "trial_a", [(10, 0.5), (20, 0.7), (30, 0.6)], kept=[20, 30], completed=False)
    history = trainer_history(str(trial), METRIC)
    assert [(h["step"], h[METRIC]) for h in history] == [(10, 0.5), (20, 0.7), (30, 0.6)]
    assert history[0]["checkpoint_path"] == ""  # rotated away
    assert history[1]["checkpoint_path"] == str(trial / "train" / "checkpoint-20")
    assert trainer_history(str(tmp_path / "nothing"), METRIC) == []


def test_rows_carry_status_best_value_step_and_checkpoint(tmp_path):
    done = _trial(tmp_path, "trial_done", [(10, 0.5), (20, 0.8), (30, 0.8), (40, 0.7)], kept=[30, 40], completed=True)
    row = trial_row(_result(done), ["learning_rate"], METRIC, "max", config={"learning_rate": 1e-3},
                    tune_status="TERMINATED")
    assert row["status"] == COMPLETED and row["learning_rate"] == 1e-3
    # a tie goes to the later evaluation: the one the trainer's rotation keeps
    assert (row[METRIC], row["best_step"], row["steps"], row["evaluations"]) == (0.8, 30, 40, 4)
    assert row["checkpoint"] == str(done / "train" / "checkpoint-30")

    stopped = _trial(tmp_path, "trial_stopped", [(10, 0.3)], kept=[10], completed=False)
    row = trial_row(_result(stopped), [], METRIC, "max", tune_status="TERMINATED")
    assert (row["status"], row["steps"], row["evaluations"]) == (STOPPED, 10, 1)

    paused = _trial(tmp_path, "trial_paused", [(10, 0.3)], kept=[10], completed=False)
    assert trial_row(_result(paused), [], METRIC, "max", tune_status="PENDING")["status"] == INTERRUPTED

    row = trial_row(_result(tmp_path / "trial_new"), [], METRIC, "max", tune_status="PENDING")
    assert row["status"] == NOT_STARTED and row[METRIC] is None

    error = RuntimeError("Traceback (most recent call last):\n  File 'x'\nValueError: bogus is not a valid value\n")
    row = trial_row(_result(tmp_path / "trial_bad", error=error), [], METRIC, "max", tune_status="ERROR")
    assert row["status"] == FAILED and row["error"] == "ValueError: bogus is not a valid value"


def test_min_mode_picks_the_lowest_value(tmp_path):
    trial = _trial(tmp_path, "trial_l", [(10, 0.9), (20, 0.4), (30, 0.6)], kept=[20, 30], completed=True)
    row = trial_row(_result(trial), [], METRIC, "min")
    assert (row[METRIC], row["best_step"]) == (0.4, 20)


def test_tune_progress_is_the_fallback_history(tmp_path):
    """Without trainer files (e.g. an experiment at a URI) the rows come from Tune's progress."""
    trial = tmp_path / "trial_p"
    trial.mkdir()
    progress = [{"step": 10, METRIC: 0.4, "evaluation": 1, "checkpoint_path": "/c10"},
                {"step": 20, METRIC: 0.6, "evaluation": 2, "checkpoint_path": "/c20"},
                {"step": 30, METRIC: np.nan, "evaluation": 3}]
    row = trial_row(_result(trial, progress), [], METRIC, "max", tune_status="TERMINATED")
    assert (row[METRIC], row["best_step"], row["checkpoint"], row["evaluations"]) == (0.6, 20, "/c20", 2)


def test_order_table_csv_and_summary(tmp_path):
    rows = [
        {"trial": "a", "status": STOPPED, "learning_rate": 1e-6, METRIC: 0.43, "steps": 10},
        {"trial": "b", "status": FAILED, "learning_rate": 1e-3, METRIC: None, "steps": None, "error": "ValueError: x"},
        {"trial": "c", "status": COMPLETED, "learning_rate": 3e-3, METRIC: 0.81925, "steps": 40},
    ]
    ordered = order_rows(rows, METRIC, "max")
    assert [r["trial"] for r in ordered] == ["c", "a", "b"]
    assert [r["trial"] for r in order_rows(rows, METRIC, "min")] == ["a", "c", "b"]
    columns = ["trial", "status", "learning_rate", METRIC, "steps", "error"]
    text = format_table(ordered, columns)
    lines = text.splitlines()
    assert lines[0].split() == columns
    assert lines[1].split() == ["c", "completed", "0.003", "0.8193", "40"]
    assert lines[2].split() == ["a", "stopped", "early", "1e-06", "0.43", "10"]
    path = write_csv(ordered, columns, tmp_path / "results.csv")
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [r["trial"] for r in read] == ["c", "a", "b"]
    assert float(read[0][METRIC]) == 0.81925 and read[2][METRIC] == "" and read[2]["error"] == "ValueError: x"

    result = SweepResult(rows=ordered, columns=columns, csv_path=path, metric=METRIC, mode="max", best_trial="c")
    assert result.num_failed == 1 and result.num_stopped_early == 1
    as_dict = dict(result)  # what `raycross tune` prints
    assert as_dict["best_trial"] == "c" and as_dict["num_trials"] == 3 and as_dict["table"] == ordered
    json.dumps(as_dict)


def test_short_error_finds_the_exception_line():
    assert short_error(ValueError("plain message")) == "ValueError: plain message"
    wrapped = "ray::ImplicitFunc.train()\n  File 'a.py'\n    raise\nraycross.config.ConfigError: config key 'x': bad\n"
    assert short_error(RuntimeError(wrapped)) == "raycross.config.ConfigError: config key 'x': bad"


def test_exported_model_loads_and_scores_like_the_checkpoint(tmp_path, tiny_model_path):
    from raycross import CrossEncoder

    source = CrossEncoder(str(tiny_model_path), device="cpu")
    checkpoint = tmp_path / "checkpoint-7"
    source.save_pretrained(str(checkpoint))
    (checkpoint / "optimizer.pt").write_bytes(b"not a model file")
    exported = export_model(str(checkpoint), tmp_path / "best")
    assert not (Path(exported) / "optimizer.pt").exists()
    pairs = [("a dog", "an animal"), ("a car", "the street")]
    np.testing.assert_allclose(CrossEncoder(exported).predict(pairs), source.predict(pairs), rtol=1e-6)


def test_trial_setup_splits_parameters_and_forces_a_checkpoint_per_evaluation(tmp_path):
    setup = TrialSetup(model_name_or_path="m", train_dataset=None, metric=METRIC, mode="max",
                       base_training={"output_dir": "x", "max_steps": 40, "eval_strategy": "steps", "eval_steps": 10,
                                      "save_strategy": "no", "learning_rate": 1e-5},
                       loss_kwargs={"pos_weight": 2.0}, model_kwargs={"max_length": 64})
    training, loss, loss_kwargs, model_kwargs = setup.split(
        {"learning_rate": 3e-5, "loss": "MSELoss", "loss.pos_weight": 4.0, "model.max_length": 32})
    assert training == {"learning_rate": 3e-5} and loss == "MSELoss"
    assert loss_kwargs == {"pos_weight": 4.0} and model_kwargs == {"max_length": 32}
    args = setup.training_args(training, str(tmp_path / "train"))
    assert args.learning_rate == 3e-5 and args.output_dir == str(tmp_path / "train")
    assert args.save_strategy.value == "steps" and args.save_steps == args.eval_steps == 10
    assert args.metric_for_best_model == METRIC and args.greater_is_better is True and args.save_total_limit == 1


def test_build_loss_leaves_out_arguments_the_chosen_loss_does_not_take(tiny_model):
    from raycross.losses import BinaryCrossEntropyLoss, MSELoss

    bce = build_loss("BinaryCrossEntropyLoss", tiny_model, {"pos_weight": 3.0})
    assert isinstance(bce, BinaryCrossEntropyLoss) and float(bce.pos_weight) == 3.0
    mse = build_loss("MSELoss", tiny_model, {"pos_weight": 3.0})
    assert isinstance(mse, MSELoss)


def test_the_reporter_reports_each_evaluation_once_with_its_checkpoint(tmp_path, monkeypatch):
    import ray.tune

    reports = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, checkpoint=None: reports.append((metrics, checkpoint)))
    reporter = TuneReporter(METRIC)
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = SimpleNamespace(log_history=[{"step": 10, METRIC: 0.2}], global_step=20, epoch=0.5, max_steps=40)
    reporter.on_train_begin(args, state, None)  # resumed after one evaluation
    (tmp_path / "checkpoint-20").mkdir()
    reporter.on_evaluate(args, state, None, metrics={METRIC: 0.6, "eval_runtime": 0.1})
    reporter.on_save(args, state, None)
    state.global_step = 30
    reporter.on_save(args, state, None)  # a save without a fresh evaluation reports nothing
    reporter.on_evaluate(args, state, None, metrics={METRIC: 0.7})
    reporter.on_train_end(args, state, None)  # evaluated but not saved: reported at the end
    assert [(m["step"], m["evaluation"], m[METRIC]) for m, _ in reports] == [(20, 2, 0.6), (30, 3, 0.7)]
    assert reports[0][0]["checkpoint_path"] == str(tmp_path / "checkpoint-20")
    assert "checkpoint_path" not in reports[1][0] and reports[0][0]["total_steps"] == 40


@pytest.mark.parametrize("value", [None, float("nan")])
def test_missing_values_print_empty(value):
    assert format_table([{"x": value, "y": 1}], ["x", "y"]).splitlines()[1] == "   1"
