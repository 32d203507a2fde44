"""raycross.tune on the session Ray cluster with in-process trials of a tiny model.

The task: rerank one "positive-class" word among 7 "negative-class" words (the vocabulary split in two).
A tiny BERT learns it in tens of steps with learning rate 1e-3..3e-3 and stays at chance with 1e-6,
which gives ASHA clear trials to stop.
"""

from __future__ import annotations

import csv
import json
import os

import pytest

from conftest import tiny_rerank_task
from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.tune import tune_cross_encoder

METRIC = "eval_dev_ndcg@10"


@pytest.fixture(scope="module")
def task():
    return tiny_rerank_task()


def _base(output_dir, max_steps=40):
    return {"output_dir": str(output_dir), "max_steps": max_steps, "per_device_train_batch_size": 16,
            "eval_strategy": "steps", "eval_steps": 10, "logging_steps": 10, "seed": 7}


@pytest.mark.slow
def test_asha_stops_the_weak_trials_and_the_best_model_is_exported(ray_session, tiny_model_path, task, tmp_path):
    train, samples = task
    evaluator = CrossEncoderRerankingEvaluator(samples, name="dev")
    result = tune_cross_encoder(
        str(tiny_model_path), train, evaluator=evaluator, base_args=_base(tmp_path / "sweep"),
        # one trial at a time in grid order: the strong trial fills the ASHA rungs before the weak ones arrive
        # (a second strong trial would be stopped too unless it beat the first at every rung)
        search_space={"learning_rate": {"grid": [1e-3, 1e-6, 1e-7]}}, search_alg="grid",
        scheduler="asha", grace_period=1, reduction_factor=2, max_concurrent_trials=1, verbose=0,
    )
    rows = {r["learning_rate"]: r for r in result.trial_rows}
    assert sorted(rows) == [1e-7, 1e-6, 1e-3]
    assert rows[1e-3]["status"] == "completed" and rows[1e-3]["steps"] == 40 and rows[1e-3]["evaluations"] == 4
    for lr in (1e-6, 1e-7):  # at chance after their first evaluation: below the rung's median, stopped
        assert rows[lr]["status"] == "stopped early"
        assert rows[lr]["steps"] == 10 and rows[lr]["evaluations"] == 1
        assert rows[lr][METRIC] < rows[1e-3][METRIC]

    # the CSV holds the same table; the best trial is the argmax of its metric column
    with open(result.csv_path, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3 and set(result.columns) <= set(table[0])
    best_row = max(table, key=lambda r: float(r[METRIC]))
    assert result.best_trial == best_row["trial"]
    assert result.best_metric == pytest.approx(float(best_row[METRIC]), rel=1e-9)
    assert result.best_params == {"learning_rate": float(best_row["learning_rate"])}
    assert result.best_metric > 0.6  # the task was learned (chance is about 0.43)

    # the exported directory loads as a CrossEncoder and scores: re-evaluating it gives the table's value
    model = CrossEncoder(result.best_model_dir)
    assert evaluator(model)[evaluator.primary_metric] == pytest.approx(result.best_metric, abs=1e-6)
    scores = model.predict([(samples[0]["query"], samples[0]["positive"][0]), (samples[0]["query"], "a")])
    assert scores.shape == (2,) and all(0.0 < s < 1.0 for s in scores)
    assert "sweep results" not in result.table() and result.table().splitlines()[0].startswith("trial")


def test_a_failing_trial_is_reported_and_the_others_complete(ray_session, tiny_model_path, task, tmp_path):
    train, samples = task
    result = tune_cross_encoder(
        str(tiny_model_path), train, evaluator=CrossEncoderRerankingEvaluator(samples, name="dev"),
        base_args=_base(tmp_path / "sweep", max_steps=20),
        # a valid loss argument name whose value only fails when the loss runs
        search_space={"learning_rate": 3e-3, "loss.reduction": {"grid": ["mean", "bogus"]}},
        scheduler="fifo", max_concurrent_trials=2, num_samples=1, verbose=0,
    )
    rows = {r["loss.reduction"]: r for r in result.trial_rows}
    assert rows["bogus"]["status"] == "failed" and rows["bogus"][METRIC] is None
    assert "bogus is not a valid value for reduction" in rows["bogus"]["error"]
    assert rows["mean"]["status"] == "completed" and rows["mean"]["steps"] == 20
    assert result.best_trial == rows["mean"]["trial"] and result.num_failed == 1
    assert CrossEncoder(result.best_model_dir).predict([("a", "b")]).shape == (1,)


def _flaky_evaluator(samples, flag_file):
    """An evaluator that crashes from step 20 on while `flag_file` exists (defined here: shipped by value)."""

    class FlakyEvaluator(CrossEncoderRerankingEvaluator):
        def __call__(self, model, output_path=None, epoch=-1, steps=-1):
            if steps >= 20 and os.path.exists(flag_file):
                raise RuntimeError("simulated node loss")
            return super().__call__(model, output_path=output_path, epoch=epoch, steps=steps)

    return FlakyEvaluator(samples, name="dev")


def test_an_interrupted_sweep_resumes_from_the_trial_checkpoints(ray_session, tiny_model_path, task, tmp_path):
    train, samples = task
    flag = tmp_path / "crash"
    flag.touch()
    kwargs = dict(
        evaluator=_flaky_evaluator(samples, str(flag)), base_args=_base(tmp_path / "sweep", max_steps=30),
        search_space={"learning_rate": {"grid": [3e-3, 1e-3]}}, scheduler="fifo", max_concurrent_trials=2,
        num_samples=1, verbose=0,
    )
    first = tune_cross_encoder(str(tiny_model_path), train, **kwargs)
    assert [r["status"] for r in first.trial_rows] == ["failed", "failed"]
    assert all(r["evaluations"] == 1 and "simulated node loss" in r["error"] for r in first.trial_rows)
    with pytest.raises(ValueError, match="pass resume=True"):
        tune_cross_encoder(str(tiny_model_path), train, **kwargs)

    flag.unlink()
    second = tune_cross_encoder(str(tiny_model_path), train, resume=True, **kwargs)
    assert [r["status"] for r in second.trial_rows] == ["completed", "completed"]
    for row in second.trial_rows:
        # every evaluation happened once: the trial continued from checkpoint-10, it did not start over
        assert row["evaluations"] == 3 and row["steps"] == 30
        with open(os.path.join(row["trial_dir"], "progress.csv"), newline="") as handle:
            reports = [(int(float(r["step"])), int(float(r["evaluation"]))) for r in csv.DictReader(handle)]
        # a restart from scratch would have reported step 10 a second time
        assert reports == [(10, 1), (20, 2), (30, 3)]
        state = json.loads(open(os.path.join(row["trial_dir"], "train", "trainer_state.json")).read())
        assert [e["step"] for e in state["log_history"] if METRIC in e] == [10, 20, 30]
    assert second.best_model_dir and CrossEncoder(second.best_model_dir).predict([("a", "b")]).shape == (1,)


def test_raycross_tune_command_runs_a_sweep_from_yaml(ray_session, tiny_model_path, tmp_path, capsys):
    import yaml

    from raycross import cli

    config = {
        "model": {"name_or_path": str(tiny_model_path), "max_length": 64},
        "data": {"train": {"bundled": "wordnet-mini/train.parquet", "limit": 400}},
        "loss": {"name": "MultipleNegativesRankingLoss"},
        "evaluator": {"type": "reranking", "data": {"bundled": "wordnet-mini/eval.parquet", "limit": 12},
                      "kwargs": {"name": "wordnet-dev"}},
        "training": {"output_dir": str(tmp_path / "cli-sweep"), "max_steps": 6, "per_device_train_batch_size": 8,
                     "eval_strategy": "steps", "eval_steps": 3},
        "tune": {"search_space": {"training.learning_rate": {"loguniform": [1e-4, 1e-3]},
                                  "loss.kwargs.scale": {"choice": [10.0, 20.0]}},
                 "num_samples": 2, "seed": 0, "verbose": 0,
                 "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["tune", "-c", str(path)]) == 0  # default concurrency: both trials at once
    out = json.loads(capsys.readouterr().out)  # stdout holds the JSON result only
    assert out["command"] == "tune" and out["metric"] == "eval_wordnet-dev_ndcg@10" and out["num_trials"] == 2
    statuses = [r["status"] for r in out["table"]]
    assert "completed" in statuses and set(statuses) <= {"completed", "stopped early"}  # ASHA may stop one
    assert {r["loss.scale"] for r in out["table"]} <= {10.0, 20.0}
    assert all(1e-4 <= r["learning_rate"] <= 1e-3 for r in out["table"])
    assert out["best_metric"] == max(r["eval_wordnet-dev_ndcg@10"] for r in out["table"])
    assert os.path.isfile(out["csv_path"]) and CrossEncoder(out["best_model_dir"]).num_labels == 1
