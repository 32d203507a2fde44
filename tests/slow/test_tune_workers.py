"""raycross.tune with trials of Ray Train workers: each trial drives a TorchTrainer whose evaluation
reports reach Tune through ``ray.tune.integration.ray_train.TuneReportCallback`` (Ray >= 2.50)."""

from __future__ import annotations

import csv
import os

import pytest

from conftest import tiny_rerank_task
from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.tune import tune_cross_encoder

METRIC = "eval_dev_ndcg@10"


@pytest.mark.slow
def test_trials_with_workers_report_each_evaluation_and_asha_stops_the_weak_one(ray_session, tiny_model_path,
                                                                                 tmp_path):
    train, samples = tiny_rerank_task()
    evaluator = CrossEncoderRerankingEvaluator(samples, name="dev")
    result = tune_cross_encoder(
        str(tiny_model_path), train, evaluator=evaluator,
        base_args={"output_dir": str(tmp_path / "sweep"), "max_steps": 30, "per_device_train_batch_size": 16,
                   "eval_strategy": "steps", "eval_steps": 10, "logging_steps": 10, "seed": 7,
                   "num_workers": 1, "resources_per_worker": {"CPU": 0.5}},
        search_space={"learning_rate": {"grid": [1e-3, 1e-7]}}, search_alg="grid",
        scheduler="asha", grace_period=1, reduction_factor=2, max_concurrent_trials=1, verbose=0,
    )
    rows = {r["learning_rate"]: r for r in result.trial_rows}
    strong, weak = rows[1e-3], rows[1e-7]
    assert strong["status"] == "completed" and strong["steps"] == 30 and strong["evaluations"] == 3
    assert weak["status"] == "stopped early" and weak[METRIC] < strong[METRIC]
    # Tune got one evaluation of the weak trial and stopped it there (its workers may train on a little
    # while the trial is torn down: the table's steps/evaluations say how far they got)
    with open(os.path.join(weak["trial_dir"], "progress.csv"), newline="") as handle:
        assert [int(float(r["evaluation"])) for r in csv.DictReader(handle)] == [1]

    # every evaluation of the workers reached Tune, numbered, with the Ray Train checkpoint of that step
    with open(os.path.join(strong["trial_dir"], "progress.csv"), newline="") as handle:
        reports = list(csv.DictReader(handle))
    assert [(int(float(r["step"])), int(float(r["evaluation"]))) for r in reports] == [(10, 1), (20, 2), (30, 3)]
    for report in reports:
        step = int(float(report["step"]))
        assert report["checkpoint_path"] == os.path.join(strong["trial_dir"], "train", f"checkpoint-{step}")

    assert result.best_trial == strong["trial"] and result.best_metric == max(r[METRIC] for r in rows.values())
    model = CrossEncoder(result.best_model_dir)
    assert evaluator(model)[evaluator.primary_metric] == pytest.approx(result.best_metric, abs=1e-6)
