"""raycross.tune inputs: the `tune` config section and the bad inputs that must fail before any trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from raycross.config import ConfigError, load_config
from raycross.evaluation import CrossEncoderRerankingEvaluator
from raycross.tune import tune_cross_encoder, validate_sweep_config
from raycross.tuning.from_config import tune_options

REPO = Path(__file__).resolve().parents[2]
SWEEP_RECIPE = REPO / "jobs" / "configs" / "hpo_sweep.yaml"

TRAIN = {"query": ["a dog", "a cat", "a car", "the city"] * 4, "doc": ["an animal", "a street", "an animal", "a house"] * 4,
         "label": [1.0, 0.0, 0.0, 1.0] * 4}
SAMPLES = [{"query": "a dog", "positive": ["an animal"], "negative": ["a street", "a house"]},
           {"query": "a car", "positive": ["a street"], "negative": ["an animal", "a house"]}]


def _config(tmp_path, **tune):
    return {
        "training": {"output_dir": str(tmp_path / "sweep"), "max_steps": 4, "eval_strategy": "steps", "eval_steps": 2},
        "loss": {"name": "BinaryCrossEntropyLoss", "kwargs": {"pos_weight": 2}},
        "tune": {"search_space": {"training.learning_rate": {"loguniform": [1e-5, 1e-4]}}, **tune},
    }


def test_the_sweep_recipe_validates_and_maps_to_tune_cross_encoder_arguments():
    config = load_config(SWEEP_RECIPE, command="tune")  # runs validate_sweep_config through raycross.config
    options = tune_options(config["tune"])
    assert options["scheduler"] == "asha" and options["grace_period"] == 1 and options["reduction_factor"] == 2
    assert options["metric"] == "eval_wordnet-dev_ndcg@10" and options["mode"] == "max"
    assert options["num_samples"] == 8 and options["max_concurrent_trials"] == 2 and options["search_alg"] == "random"
    assert set(options["search_space"]) == {"training.learning_rate", "training.warmup_ratio",
                                            "training.per_device_train_batch_size"}


def test_search_alg_and_scheduler_mappings(tmp_path):
    options = tune_options({"search_space": {"learning_rate": {"choice": [1e-5]}},
                            "search_alg": {"name": "optuna", "seed": 3}, "scheduler": "fifo"})
    assert (options["search_alg"], options["seed"], options["scheduler"]) == ("optuna", 3, "fifo")
    with pytest.raises(ConfigError, match="config key 'tune.scheduler'"):
        tune_options({"search_space": {}, "scheduler": "hyperband"})
    with pytest.raises(ConfigError, match="config key 'tune.scheduler.grace'"):
        tune_options({"search_space": {}, "scheduler": {"name": "asha", "grace": 1}})
    with pytest.raises(ConfigError, match="config key 'tune.search_space'"):
        tune_options({"metric": "x"})
    with pytest.raises(ConfigError, match="config key 'tune.num_trials'"):
        tune_options({"search_space": {}, "num_trials": 3})


@pytest.mark.parametrize("space, key, message", [
    ({"training.learning_rat": {"choice": [1e-5]}}, "tune.search_space.training.learning_rat", "did you mean 'learning_rate'"),
    ({"loss.kwargs.pos_wieght": {"uniform": [1, 5]}}, "tune.search_space.loss.kwargs.pos_wieght", "unknown loss argument"),
    ({"model.max_len": {"choice": [64]}}, "tune.search_space.model.max_len", "unknown CrossEncoder argument"),
    ({"training.warmup_ratio": {"unifrom": [0, 0.1]}}, "tune.search_space.training.warmup_ratio", "unknown distribution"),
    ({"training.per_device_train_batch_size": {"choice": [0, 8]}}, "tune.search_space.training.per_device_train_batch_size",
     "the value 0 is not valid"),
])
def test_bad_search_spaces_name_the_config_key(tmp_path, space, key, message):
    config = _config(tmp_path)
    config["tune"]["search_space"] = space
    with pytest.raises(ConfigError) as info:
        validate_sweep_config(config)
    assert info.value.key == key and message in str(info.value)


def test_a_config_without_evaluations_is_rejected(tmp_path):
    config = _config(tmp_path)
    config["training"]["eval_strategy"] = "no"
    with pytest.raises(ConfigError, match="eval_strategy"):
        validate_sweep_config(config)
    config = _config(tmp_path)
    config["loss"] = {"a": {"name": "MSELoss"}}
    with pytest.raises(ConfigError, match="per-dataset losses are not supported"):
        validate_sweep_config(config)


# --------------------------------------------------------------------------- fail before any trial starts
def _tune(tmp_path, tiny_model_path, **kwargs):
    defaults = dict(
        train_dataset=TRAIN, evaluator=CrossEncoderRerankingEvaluator(SAMPLES, name="dev"),
        base_args={"output_dir": str(tmp_path / "sweep"), "max_steps": 4, "eval_strategy": "steps", "eval_steps": 2},
        search_space={"learning_rate": {"loguniform": [1e-5, 1e-4]}}, num_samples=2,
    )
    defaults.update(kwargs)
    return tune_cross_encoder(str(tiny_model_path), **defaults)


def test_unknown_parameter_names_fail_before_any_trial(tmp_path, tiny_model_path):
    with pytest.raises(ValueError, match=r"search_space\['learningrate'\]: unknown parameter 'learningrate'"):
        _tune(tmp_path, tiny_model_path, search_space={"learningrate": {"loguniform": [1e-5, 1e-4]}})
    with pytest.raises(ValueError, match=r"search_space\['loss.margin'\]: unknown loss argument 'margin'"):
        _tune(tmp_path, tiny_model_path, search_space={"loss.margin": {"uniform": [0, 1]}})
    with pytest.raises(ValueError, match=r"loss_kwargs: BinaryCrossEntropyLoss does not take \['margin'\]"):
        _tune(tmp_path, tiny_model_path, loss_kwargs={"margin": 1.0})
    assert not (tmp_path / "sweep").exists()  # nothing was started


def test_a_metric_the_evaluator_does_not_produce_fails_before_any_trial(tmp_path, tiny_model_path):
    with pytest.raises(ValueError) as info:
        _tune(tmp_path, tiny_model_path, metric="eval_dev_ndcg@5")
    message = str(info.value)
    assert "metric: 'eval_dev_ndcg@5' is not produced" in message
    assert "['eval_dev_map', 'eval_dev_mrr@10', 'eval_dev_ndcg@10']" in message
    with pytest.raises(ValueError, match="not produced"):
        _tune(tmp_path, tiny_model_path, metric="eval_loss")  # no eval_dataset: no eval loss
    assert not (tmp_path / "sweep").exists()


def test_other_bad_inputs_fail_before_any_trial(tmp_path, tiny_model_path):
    with pytest.raises(ValueError, match="base_args.eval_strategy: a sweep compares trials on their evaluations"):
        _tune(tmp_path, tiny_model_path, base_args={"output_dir": str(tmp_path / "sweep"), "max_steps": 4})
    with pytest.raises(ValueError, match="search_alg: expected one of"):
        _tune(tmp_path, tiny_model_path, search_alg="bayes")
    with pytest.raises(ValueError, match="scheduler: expected one of"):
        _tune(tmp_path, tiny_model_path, scheduler="hyperband")
    with pytest.raises(ValueError, match="grace_period"):
        _tune(tmp_path, tiny_model_path, grace_period=0)
    with pytest.raises(ValueError, match="search_alg='grid' needs a finite set"):
        _tune(tmp_path, tiny_model_path, search_alg="grid")
    with pytest.raises(TypeError, match="base_args"):
        _tune(tmp_path, tiny_model_path, base_args={"output_dir": "x", "learning_rat": 1.0})
    assert not (tmp_path / "sweep").exists()
