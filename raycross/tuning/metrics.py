"""Which metric a sweep optimizes, checked against the keys the trials' evaluations will report.

The trainer reports ``eval_loss`` (``eval_<name>_loss`` per eval dataset) and ``eval_<key>`` for every
key of the evaluator; those keys are known before any trial (see
``raycross.training.validation.expected_metric_keys``, which asks a raycross evaluator with dummy scores).

Example:
    >>> from raycross.evaluation import CrossEncoderRerankingEvaluator
    >>> ev = CrossEncoderRerankingEvaluator([{"query": "q", "positive": ["a"], "negative": ["b"]}], name="dev")
    >>> keys = {"eval_dev_map": None, "eval_dev_mrr@10": None, "eval_dev_ndcg@10": None}
    >>> resolve_metric(None, None, ev, eval_dataset=None, keys=keys)
    ('eval_dev_ndcg@10', 'max')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "eval_"


def resolve_metric(
    metric: str | None,
    mode: str | None,
    evaluator: Any,
    eval_dataset: Any,
    keys: Mapping[str, Any],
) -> tuple[str, str]:
    """The reported key to optimize and ``"max"``/``"min"``; ValueError when the runs will not report it.

    Default: ``eval_`` + the evaluator's primary metric (``eval_loss`` without an evaluator). A metric
    may be given with or without the ``eval_`` prefix. Default mode: the evaluator's direction for its
    primary metric, ``min`` for a loss, else ``max``.
    """
    if not keys:
        raise ValueError("metric: a sweep needs evaluations to compare trials: pass an evaluator and/or an "
                         "eval_dataset (neither was given)")
    if mode is not None and mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', found {mode!r}")
    primary = getattr(evaluator, "primary_metric", None) if evaluator is not None else None
    if metric is None:
        if primary:
            metric = primary
        elif f"{PREFIX}loss" in keys:
            metric = f"{PREFIX}loss"
        else:
            metric = next(iter(keys))
    if not isinstance(metric, str):
        raise TypeError(f"metric: expected a metric name like 'eval_dev_ndcg@10', found {type(metric).__name__}")
    resolved = metric if metric in keys else f"{PREFIX}{metric}" if f"{PREFIX}{metric}" in keys else None
    if resolved is None:
        raise ValueError(
            f"metric: {metric!r} is not produced by the evaluations of this sweep; they report "
            f"{sorted(keys)} (the evaluator's keys prefixed with 'eval_', plus the eval loss when an "
            "eval_dataset is given)"
        )
    if mode is None:
        if resolved.endswith("loss"):
            mode = "min"
        elif primary and resolved in (primary, f"{PREFIX}{primary}"):
            mode = "max" if getattr(evaluator, "greater_is_better", True) else "min"
        else:
            mode = "max"
    return resolved, mode
