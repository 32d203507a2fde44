"""Hyperparameter sweeps on Ray Tune: every trial is a cross-encoder training run; ASHA stops weak
trials after their evaluations; the best trial's model is exported as a CrossEncoder directory.

Trials run in-process (``num_workers=0``: one Tune process each, fractional CPUs, laptop friendly) or
drive N Ray Train workers each (``num_workers=N``). The search space is a plain dict (YAML friendly):

Example:
    >>> from raycross import CrossEncoderTrainingArguments
    >>> from raycross.tune import tune_cross_encoder
    >>> result = tune_cross_encoder(
    ...     "microsoft/MiniLM-L12-H384-uncased", train_dataset, evaluator=evaluator,
    ...     base_args=CrossEncoderTrainingArguments("outputs/sweep", max_steps=300, eval_strategy="steps",
    ...                                             eval_steps=50),
    ...     search_space={"learning_rate": {"loguniform": [1e-5, 1e-4]},
    ...                   "warmup_ratio": {"choice": [0.0, 0.1]},
    ...                   "loss": {"choice": ["BinaryCrossEntropyLoss", "MSELoss"]},
    ...                   "loss.pos_weight": {"uniform": [1, 5]}},
    ...     num_samples=8, scheduler="asha", search_alg="random")  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
    >>> result.best_params, result.best_metric, result.best_model_dir  # doctest: +SKIP
"""

from raycross.tuning.from_config import run_sweep_from_config, validate_sweep_config
from raycross.tuning.results import SweepResult, export_model, format_table
from raycross.tuning.space import SearchSpace
from raycross.tuning.sweep import plan_resources, tune_cross_encoder

__all__ = [
    "SearchSpace",
    "SweepResult",
    "export_model",
    "format_table",
    "plan_resources",
    "run_sweep_from_config",
    "tune_cross_encoder",
    "validate_sweep_config",
]
