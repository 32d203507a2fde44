"""``raycross tune config.yaml``: a sweep from the run-config sections of :mod:`raycross.config`.

It sits above the config package: the data goes through the same preparation as ``raycross train``
(:func:`raycross.config.prepare.prepare_training_data`) and the training arguments are the ones the
config parsed once (:class:`raycross.config.RunSpec`).

The sweep reuses the ``model``, ``data``, ``loss``, ``evaluator``, ``training`` (the base arguments of
every trial) and, when present, ``mining``/``teacher`` sections (run once, before the trials) of the
training recipe, plus a ``tune`` section::

    tune:
      search_space:                        # dotted config keys (or short names) -> distributions
        training.learning_rate: {loguniform: [1.0e-5, 1.0e-4]}
        training.per_device_train_batch_size: {choice: [16, 32]}
        loss.name: {choice: [BinaryCrossEntropyLoss, MSELoss]}
        loss.kwargs.pos_weight: {uniform: [1, 5]}
        model.max_length: {choice: [128, 256]}
      metric: eval_wordnet-dev_ndcg@10     # default: eval_ + the evaluator's primary metric
      mode: max                            # default: the metric's direction
      num_samples: 8
      max_concurrent_trials: 2             # default: what the cluster fits
      cpus_per_trial: 1                    # in-process trials (training.num_workers: 0)
      gpus_per_trial: 1
      scheduler: {name: asha, grace_period: 1, reduction_factor: 2, max_t: 10}   # or asha / fifo
      search_alg: random                   # random | grid | optuna (or {name: optuna, seed: 0})
      seed: 0
      name: my-sweep                       # experiment name (default: the training.output_dir name)
      storage_path: s3://bucket/sweeps     # default: next to training.output_dir
      resume: false
      export_dir: outputs/best             # default: <training.output_dir>/best_model
      evaluate_base_model: false
      verbose: 1

Example:
    >>> from raycross.config import load_config
    >>> cfg = load_config("jobs/configs/hpo_sweep.yaml", command="tune")  # doctest: +SKIP
    >>> result = run_sweep_from_config(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from raycross.config.errors import ConfigError, check_keys

TUNE_KEYS = (
    "search_space", "metric", "mode", "num_samples", "max_concurrent_trials", "cpus_per_trial", "gpus_per_trial",
    "scheduler", "search_alg", "seed", "name", "storage_path", "resume", "export_dir", "evaluate_base_model",
    "verbose",
)
SCHEDULER_KEYS = ("name", "grace_period", "reduction_factor", "max_t")
SEARCH_ALG_KEYS = ("name", "seed")


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, found {type(value).__name__} {value!r}")
    return value


def tune_options(tune: Mapping[str, Any]) -> dict[str, Any]:
    """The ``tune`` section as keyword arguments of :func:`tune_cross_encoder` (shape checks only).

    Example:
        >>> tune_options({"search_space": {"training.learning_rate": {"choice": [1e-5]}},
        ...               "scheduler": {"name": "asha", "grace_period": 2}, "search_alg": "grid"})["grace_period"]
        2
    """
    tune = _mapping(tune, "tune")
    check_keys(tune, TUNE_KEYS, "tune")
    if tune.get("search_space") is None:
        raise ConfigError("tune.search_space", "required: {dotted key: distribution}, e.g. "
                                               "{training.learning_rate: {loguniform: [1.0e-5, 1.0e-4]}}")
    options = {k: v for k, v in tune.items() if k not in ("scheduler", "search_alg")}
    options["search_space"] = dict(_mapping(tune["search_space"], "tune.search_space"))
    scheduler = tune.get("scheduler", "asha")
    if isinstance(scheduler, Mapping):
        check_keys(scheduler, SCHEDULER_KEYS, "tune.scheduler")
        options["scheduler"] = scheduler.get("name", "asha")
        for key in ("grace_period", "reduction_factor", "max_t"):
            if key in scheduler:
                options[key] = scheduler[key]
    else:
        options["scheduler"] = scheduler
    search_alg = tune.get("search_alg", "random")
    if isinstance(search_alg, Mapping):
        check_keys(search_alg, SEARCH_ALG_KEYS, "tune.search_alg")
        options["search_alg"] = search_alg.get("name", "random")
        if "seed" in search_alg:
            options["seed"] = search_alg["seed"]
    else:
        options["search_alg"] = search_alg
    if options["scheduler"] is not None and options["scheduler"] not in ("asha", "fifo"):
        raise ConfigError("tune.scheduler", f"expected asha, fifo or null, found {options['scheduler']!r}")
    if options["search_alg"] not in ("random", "grid", "optuna"):
        raise ConfigError("tune.search_alg", f"expected random, grid or optuna, found {options['search_alg']!r}")
    return options


def _single_loss(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    loss = _mapping(config.get("loss") or {}, "loss")
    if "name" not in loss:
        raise ConfigError("loss", "a sweep trains with one loss: give {name, kwargs} (per-dataset losses are not "
                                  "supported by raycross tune)")
    return loss["name"], dict(loss.get("kwargs") or {})


def _as_config_error(exc: Exception) -> ConfigError:
    """A search-space ValueError as a ConfigError naming ``tune.search_space.<key>``."""
    message = str(exc)
    found = re.match(r"search_space\[['\"](.+?)['\"]\]", message)
    key = f"tune.search_space.{found.group(1)}" if found else "tune"
    return ConfigError(key, message)


def validate_sweep_config(config: Mapping[str, Any], training: Any = None) -> None:
    """Check the ``tune`` section against the rest of the config: option shapes, every search-space name
    (training fields, loss arguments, CrossEncoder arguments) and checkable value. No data or model is
    loaded (the metric is checked against the evaluator when the sweep starts). `training`: the built
    CrossEncoderTrainingArguments of the config, when the caller has them.

    Example:
        >>> validate_sweep_config({"training": {"output_dir": "o", "eval_strategy": "steps", "eval_steps": 5},
        ...     "loss": {"name": "BinaryCrossEntropyLoss"}, "tune": {"search_space": {"training.lr": {"choice": [1]}}}})
        Traceback (most recent call last):
        ...
        raycross.config.ConfigError: config key 'tune.search_space.training.lr': search_space['training.lr']: unknown parameter 'lr': not a CrossEncoderTrainingArguments field (nor 'loss', 'loss.<argument>', 'model.<argument>')
    """
    from raycross.config.spec import build_training_args
    from raycross.tuning.space import SearchSpace
    from raycross.tuning.sweep import _base_training

    options = tune_options(config.get("tune") or {})
    loss_name, _ = _single_loss(config)
    try:
        base = _base_training(training if training is not None else build_training_args(config.get("training") or {}))
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError("training.eval_strategy" if "eval_strategy" in str(exc) else "training", str(exc)) from None
    try:
        space = SearchSpace.parse(options["search_space"])
        space.validate(base, loss_name)
        space.to_tune(options["search_alg"])
    except (ValueError, TypeError) as exc:
        raise _as_config_error(exc) from None


def run_sweep_from_config(config: Mapping[str, Any]) -> Any:
    """Run the sweep a config describes (a mapping, or the :class:`~raycross.config.RunSpec` parsed from
    it); returns the :class:`SweepResult` (a mapping).

    Mining and teacher scoring, when configured, run once before the trials; every trial trains on
    their output.

    Example:
        >>> result = run_sweep_from_config(load_config("jobs/configs/hpo_sweep.yaml", command="tune"))  # doctest: +SKIP
        >>> result["best_model_dir"]  # doctest: +SKIP
    """
    from raycross.config.build import build_evaluator, model_kwargs
    from raycross.config.prepare import prepare_training_data
    from raycross.config.spec import RunSpec, parse_config
    from raycross.tuning.sweep import tune_cross_encoder

    spec = config if isinstance(config, RunSpec) and config.command == "tune" else parse_config(config, "tune")
    loss_name, loss_kwargs = _single_loss(spec.raw)  # as written: the search space may override its keys
    train_ds, eval_ds = prepare_training_data(spec)
    return tune_cross_encoder(
        spec.model.ref.resolve("model"), train_ds, eval_dataset=eval_ds, evaluator=build_evaluator(spec.evaluator),
        loss=loss_name, loss_kwargs=loss_kwargs, base_args=spec.training, model_kwargs=model_kwargs(spec.model),
        **spec.tune,
    )
