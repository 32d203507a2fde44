"""raycross.tune search spaces, metric resolution and trial sizing: pure checks, no Ray cluster."""

from __future__ import annotations

import pytest
from ray.tune.search.sample import Categorical, Float, Integer

from raycross.evaluation import CrossEncoderClassificationEvaluator, CrossEncoderRerankingEvaluator
from raycross.training import CrossEncoderTrainingArguments
from raycross.tuning.metrics import resolve_metric
from raycross.tuning.space import SearchSpace, canonical_key, loss_accepts, parse_value, resolve_loss
from raycross.tuning.sweep import estimate_evaluations, plan_resources

BASE = CrossEncoderTrainingArguments("out", max_steps=40, eval_strategy="steps", eval_steps=10).to_dict()


# ------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("spec, expected", [
    ("learning_rate", ("learning_rate", "training", "learning_rate")),
    ("training.warmup_ratio", ("warmup_ratio", "training", "warmup_ratio")),
    ("loss", ("loss", "loss", "name")),
    ("loss.name", ("loss", "loss", "name")),
    ("loss.pos_weight", ("loss.pos_weight", "loss_kwargs", "pos_weight")),
    ("loss.kwargs.pos_weight", ("loss.pos_weight", "loss_kwargs", "pos_weight")),
    ("model.max_length", ("model.max_length", "model", "max_length")),
])
def test_keys_of_both_spellings_map_to_one_canonical_name(spec, expected):
    assert canonical_key(spec) == expected


@pytest.mark.parametrize("spec", ["", "a..b", "training.a.b", "model.a.b", "loss.kwargs.a.b"])
def test_malformed_keys_are_rejected(spec):
    with pytest.raises(ValueError, match="search_space"):
        canonical_key(spec)


def test_specs_become_ray_tune_distributions_with_the_given_bounds():
    space = SearchSpace.parse({
        "learning_rate": {"loguniform": [1e-5, 1e-4]},
        "warmup_ratio": {"uniform": [0.0, 0.2]},
        "per_device_train_batch_size": {"choice": [16, 32]},
        "seed": {"randint": [0, 10]},
        "weight_decay": 0.01,
    })
    tuned = space.to_tune()
    lr = tuned["learning_rate"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-5, 1e-4)
    assert isinstance(tuned["warmup_ratio"], Float) and tuned["warmup_ratio"].upper == 0.2
    assert isinstance(tuned["per_device_train_batch_size"], Categorical)
    assert tuned["per_device_train_batch_size"].categories == [16, 32]
    assert isinstance(tuned["seed"], Integer) and (tuned["seed"].lower, tuned["seed"].upper) == (0, 10)
    assert tuned["weight_decay"] == 0.01
    assert space.searched_keys == ["learning_rate", "warmup_ratio", "per_device_train_batch_size", "seed"]
    # a loguniform sample stays inside its bounds
    samples = [tuned["learning_rate"].sample() for _ in range(50)]
    assert all(1e-5 <= s <= 1e-4 for s in samples)


def test_grid_search_turns_choices_into_grids_and_counts_points():
    space = SearchSpace.parse({"learning_rate": {"choice": [1e-5, 2e-5, 3e-5]}, "warmup_ratio": {"grid": [0.0, 0.1]}})
    assert space.grid_size("random") == 2
    assert space.grid_size("grid") == 6
    assert space.to_tune("grid")["learning_rate"] == {"grid_search": [1e-5, 2e-5, 3e-5]}
    assert isinstance(space.to_tune("random")["learning_rate"], Categorical)


def test_grid_search_refuses_continuous_distributions():
    space = SearchSpace.parse({"learning_rate": {"loguniform": [1e-5, 1e-4]}})
    with pytest.raises(ValueError, match=r"search_alg='grid' needs a finite set .*'learning_rate'"):
        space.to_tune("grid")


def test_optuna_refuses_grid_values():
    space = SearchSpace.parse({"learning_rate": {"grid": [1e-5, 1e-4]}})
    with pytest.raises(ValueError, match="search_alg='optuna' does not take grid values"):
        space.to_tune("optuna")


@pytest.mark.parametrize("value, message", [
    ({"logunifrom": [1e-5, 1e-4]}, "unknown distribution 'logunifrom'; did you mean 'loguniform'"),
    ({"uniform": [1.0]}, "uniform expects 2 numbers"),
    ({"uniform": [2.0, 1.0]}, "expects lower < upper"),
    ({"loguniform": [0.0, 1.0]}, "expects a positive lower bound"),
    ({"choice": []}, "needs at least one value"),
    ({"randint": [0.5, 3]}, "randint expects integers"),
    ({"uniform": [0, 1], "choice": [1]}, "expected one distribution"),
])
def test_bad_distributions_name_the_key(value, message):
    with pytest.raises(ValueError, match=r"search_space\['x'\]") as info:
        parse_value(value, "search_space['x']")
    assert message in str(info.value)


def test_duplicate_spellings_of_one_parameter_are_rejected():
    with pytest.raises(ValueError, match="'training.learning_rate' and 'learning_rate' name the same parameter"):
        SearchSpace.parse({"learning_rate": {"choice": [1e-5]}, "training.learning_rate": {"choice": [2e-5]}})


def test_an_empty_search_space_is_an_error():
    with pytest.raises(ValueError, match="nothing to search"):
        SearchSpace.parse({})


# ------------------------------------------------------------------------------------------- names
def test_unknown_training_field_is_named_with_a_suggestion():
    space = SearchSpace.parse({"learning_rat": {"choice": [1e-5]}})
    with pytest.raises(ValueError) as info:
        space.validate(BASE, "BinaryCrossEntropyLoss")
    message = str(info.value)
    assert "search_space['learning_rat']" in message and "unknown parameter 'learning_rat'" in message
    assert "did you mean 'learning_rate'" in message


def test_fields_that_shape_the_sweep_cannot_be_searched():
    space = SearchSpace.parse({"num_workers": {"choice": [1, 2]}})
    with pytest.raises(ValueError, match="'num_workers' cannot vary between trials"):
        space.validate(BASE, "BinaryCrossEntropyLoss")


def test_loss_arguments_are_checked_against_the_loss_signature():
    SearchSpace.parse({"loss.pos_weight": {"uniform": [1, 5]}}).validate(BASE, "BinaryCrossEntropyLoss")
    # torch's BCEWithLogitsLoss takes `reduction`: BinaryCrossEntropyLoss forwards it
    SearchSpace.parse({"loss.reduction": {"choice": ["mean", "sum"]}}).validate(BASE, "BinaryCrossEntropyLoss")
    with pytest.raises(ValueError) as info:
        SearchSpace.parse({"loss.pos_weigth": {"uniform": [1, 5]}}).validate(BASE, "BinaryCrossEntropyLoss")
    assert "unknown loss argument 'pos_weigth'" in str(info.value) and "did you mean 'pos_weight'" in str(info.value)
    with pytest.raises(ValueError, match="MSELoss takes"):
        SearchSpace.parse({"loss.pos_weight": {"uniform": [1, 5]}}).validate(BASE, "MSELoss")


def test_a_loss_argument_may_belong_to_one_of_the_searched_losses():
    space = SearchSpace.parse({"loss": {"choice": ["BinaryCrossEntropyLoss", "MSELoss"]},
                               "loss.pos_weight": {"uniform": [1, 5]}})
    space.validate(BASE, "BinaryCrossEntropyLoss")
    with pytest.raises(ValueError, match="BinaryCrossEntropyLoss / ListNetLoss take"):
        SearchSpace.parse({"loss": {"choice": ["BinaryCrossEntropyLoss", "ListNetLoss"]},
                           "loss.margin": {"uniform": [1, 5]}}).validate(BASE, "BinaryCrossEntropyLoss")


def test_unknown_loss_names_are_rejected_with_close_matches():
    space = SearchSpace.parse({"loss": {"choice": ["BinaryCrossEntropyLoss", "MSELos"]}})
    with pytest.raises(ValueError, match="unknown loss 'MSELos'; did you mean 'MSELoss'"):
        space.validate(BASE, "BinaryCrossEntropyLoss")
    with pytest.raises(ValueError, match="must be a choice/grid of loss names"):
        SearchSpace.parse({"loss": {"uniform": [0, 1]}}).validate(BASE, "BinaryCrossEntropyLoss")


def test_model_arguments_are_checked_against_the_cross_encoder_signature():
    SearchSpace.parse({"model.max_length": {"choice": [64, 128]}}).validate(BASE, "BinaryCrossEntropyLoss")
    with pytest.raises(ValueError, match="unknown CrossEncoder argument 'max_len'; did you mean 'max_length'"):
        SearchSpace.parse({"model.max_len": {"choice": [64]}}).validate(BASE, "BinaryCrossEntropyLoss")


def test_values_are_checked_with_the_training_arguments_before_any_trial():
    with pytest.raises(ValueError, match=r"the value 0 is not valid for per_device_train_batch_size"):
        SearchSpace.parse({"per_device_train_batch_size": {"choice": [16, 0]}}).validate(BASE, "BinaryCrossEntropyLoss")
    # a float distribution for an integer field fails on its bounds
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        SearchSpace.parse({"per_device_train_batch_size": {"uniform": [8, 32]}}).validate(BASE, "BinaryCrossEntropyLoss")
    with pytest.raises(ValueError, match="warmup_ratio"):
        SearchSpace.parse({"warmup_ratio": {"uniform": [0.0, 1.5]}}).validate(BASE, "BinaryCrossEntropyLoss")


def test_loss_helpers():
    bce = resolve_loss("BinaryCrossEntropyLoss")
    assert loss_accepts(bce, "pos_weight") and loss_accepts(bce, "reduction") and not loss_accepts(bce, "margin")
    with pytest.raises(TypeError, match="expected a raycross.losses class name"):
        resolve_loss(3)


# ------------------------------------------------------------------------------------------- metric
@pytest.fixture
def reranking_evaluator():
    return CrossEncoderRerankingEvaluator([{"query": "q", "positive": ["a"], "negative": ["b", "c"]}], name="dev")


def _keys(evaluator, eval_names=(), single=True, num_labels=1):
    from raycross.training.validation import expected_metric_keys

    return dict.fromkeys(expected_metric_keys(evaluator, list(eval_names), single, num_labels))


def test_default_metric_is_the_evaluators_primary_metric(reranking_evaluator):
    keys = _keys(reranking_evaluator)
    assert sorted(keys) == ["eval_dev_map", "eval_dev_mrr@10", "eval_dev_ndcg@10"]
    assert resolve_metric(None, None, reranking_evaluator, None, keys) == ("eval_dev_ndcg@10", "max")
    # with or without the eval_ prefix
    assert resolve_metric("dev_map", None, reranking_evaluator, None, keys) == ("eval_dev_map", "max")
    assert resolve_metric("eval_dev_mrr@10", "min", reranking_evaluator, None, keys) == ("eval_dev_mrr@10", "min")


def test_eval_loss_is_the_default_without_an_evaluator_and_is_minimized():
    keys = _keys(None, ["eval"])
    assert resolve_metric(None, None, None, object(), keys) == ("eval_loss", "min")


def test_a_metric_the_evaluations_do_not_report_is_an_error_listing_the_real_keys(reranking_evaluator):
    keys = _keys(reranking_evaluator, ["eval"])
    with pytest.raises(ValueError) as info:
        resolve_metric("eval_dev_ndcg@5", None, reranking_evaluator, object(), keys)
    message = str(info.value)
    assert "'eval_dev_ndcg@5' is not produced" in message
    assert "'eval_dev_ndcg@10'" in message and "'eval_loss'" in message


def test_classification_keys_for_three_labels():
    evaluator = CrossEncoderClassificationEvaluator([("a", "b"), ("c", "d"), ("e", "f")], [0, 1, 2], name="nli")
    keys = _keys(evaluator, num_labels=3)
    metric, mode = resolve_metric(None, None, evaluator, None, keys)
    assert metric == "eval_nli_f1_macro" and mode == "max"
    assert sorted(keys) == ["eval_nli_f1_macro", "eval_nli_f1_micro", "eval_nli_f1_weighted"]


def test_no_evaluation_at_all_is_an_error():
    with pytest.raises(ValueError, match="needs evaluations"):
        resolve_metric(None, None, None, None, {})
    with pytest.raises(ValueError, match="mode: expected 'max' or 'min'"):
        resolve_metric(None, "up", None, None, {"eval_loss": None})


# ------------------------------------------------------------------------------------------- sizing
def test_in_process_trials_take_one_cpu_each_and_fill_the_cluster():
    plan = plan_resources({"num_workers": 0, "use_gpu": None}, {"CPU": 4.0}, total_trials=8)
    assert plan.trial == {"CPU": 1.0} and plan.max_concurrent_trials == 4
    plan = plan_resources({"num_workers": 0, "use_gpu": None}, {"CPU": 2.0}, total_trials=8, cpus_per_trial=0.5)
    assert plan.max_concurrent_trials == 4
    # never more at once than there are trials
    assert plan_resources({"num_workers": 0}, {"CPU": 16.0}, total_trials=3).max_concurrent_trials == 3


def test_in_process_trials_get_a_gpu_when_the_cluster_has_them():
    plan = plan_resources({"num_workers": 0, "use_gpu": None}, {"CPU": 16.0, "GPU": 2.0}, total_trials=8)
    assert plan.trial == {"CPU": 1.0, "GPU": 1.0} and plan.max_concurrent_trials == 2
    plan = plan_resources({"num_workers": 0, "use_gpu": False}, {"CPU": 16.0, "GPU": 2.0}, total_trials=8)
    assert plan.trial == {"CPU": 1.0} and plan.max_concurrent_trials == 8
    with pytest.raises(ValueError, match="use_gpu=True with in-process trials needs GPUs"):
        plan_resources({"num_workers": 0, "use_gpu": True}, {"CPU": 4.0}, total_trials=2)


def test_trials_with_workers_leave_a_cpu_for_data_and_never_oversubscribe():
    base = {"num_workers": 2, "resources_per_worker": {"CPU": 1}, "use_gpu": False}
    plan = plan_resources(base, {"CPU": 8.0}, total_trials=10)
    # 2 workers x 1 CPU per trial, 1 CPU kept free: floor(7 / 2) = 3 trials
    assert plan.max_concurrent_trials == 3
    assert plan.trial["CPU"] < 0.01  # the trial process itself only drives its Ray Train run
    assert plan.max_concurrent_trials * plan.per_trial_cpu <= 8.0
    with pytest.raises(ValueError, match="one trial needs 2 CPU"):
        plan_resources(base, {"CPU": 1.0}, total_trials=2)
    gpu = plan_resources({"num_workers": 2, "use_gpu": True}, {"CPU": 32.0, "GPU": 4.0}, total_trials=10)
    assert gpu.per_trial_gpu == 2 and gpu.max_concurrent_trials == 2


def test_an_explicit_concurrency_wins():
    plan = plan_resources({"num_workers": 0}, {"CPU": 4.0}, total_trials=8, max_concurrent_trials=1)
    assert plan.max_concurrent_trials == 1


def test_evaluations_per_trial_are_estimated_for_asha_max_t():
    space = SearchSpace.parse({"learning_rate": {"loguniform": [1e-5, 1e-4]}})
    assert estimate_evaluations({"eval_strategy": "steps", "eval_steps": 10, "max_steps": 40}, space) == 4
    assert estimate_evaluations({"eval_strategy": "epoch", "num_train_epochs": 3, "max_steps": -1}, space) == 3
    # a fraction of the (unknown) total: ceil(1 / fraction) evaluations plus the final one
    assert estimate_evaluations({"eval_strategy": "steps", "eval_steps": 0.2, "max_steps": -1}, space) == 6
    # unknowable when the schedule itself is searched
    searched = SearchSpace.parse({"max_steps": {"choice": [20, 40]}})
    assert estimate_evaluations({"eval_strategy": "steps", "eval_steps": 10, "max_steps": 40}, searched) is None


def test_optuna_samples_the_converted_space_within_its_bounds():
    pytest.importorskip("optuna")
    from raycross.tuning.sweep import _searcher

    space = SearchSpace.parse({"learning_rate": {"loguniform": [1e-5, 1e-4]},
                               "per_device_train_batch_size": {"choice": [16, 32]},
                               "loss.pos_weight": {"uniform": [1, 5]}})
    searcher = _searcher("optuna", "eval_dev_ndcg@10", "max", seed=0, max_concurrent=2)
    assert searcher.set_search_properties(None, None, space.to_tune("optuna"))
    for i in range(5):
        config = searcher.suggest(f"t{i}")
        assert 1e-5 <= config["learning_rate"] <= 1e-4 and config["per_device_train_batch_size"] in (16, 32)
        assert 1 <= config["loss.pos_weight"] <= 5


def test_random_search_is_seeded_and_limits_concurrency_itself():
    from raycross.tuning.sweep import _is_searcher_only, _searcher

    generator = _searcher("random", "m", "max", seed=0, max_concurrent=3)
    assert generator.max_concurrent == 3 and not _is_searcher_only("random") and _is_searcher_only("optuna")


def test_asha_rungs_sit_on_evaluations_before_the_last_one():
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    from raycross.tuning.sweep import _scheduler

    space = SearchSpace.parse({"learning_rate": {"loguniform": [1e-5, 1e-4]}})
    asha = _scheduler("asha", 1, 2, None, BASE, space)  # 4 evaluations per trial (40 steps, every 10)
    assert isinstance(asha, AsyncHyperBandScheduler) and asha._time_attr == "evaluation"
    assert sorted(m for m, _ in asha._brackets[0]._rungs) == [1, 2]
    long = dict(BASE, max_steps=160)  # 16 evaluations: rungs 1, 2, 4, 8
    assert sorted(m for m, _ in _scheduler("asha", 1, 2, None, long, space)._brackets[0]._rungs) == [1, 2, 4, 8]
    assert isinstance(_scheduler("fifo", 1, 2, None, BASE, space), FIFOScheduler)
    with pytest.raises(ValueError, match="max_t: 2 evaluations per trial is less than grace_period=3"):
        _scheduler("asha", 3, 2, 2, BASE, space)
