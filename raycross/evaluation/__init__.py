"""Evaluators for cross-encoders, with the sentence-transformers names, keys and CSV files.

Every evaluator is a :class:`CrossEncoderEvaluator`: ``evaluator(model)`` returns
``{f"{name}_{metric}": value}`` and sets ``primary_metric``, so the trainer's
``metric_for_best_model="eval_<key>"`` works unchanged. Scoring can be moved off the calling process:
``pairs()`` + ``compute_metrics(scores)`` (sharded over training workers with
:func:`evaluate_sharded`), or ``scorer="ray"`` / :class:`RayPairScorer` (a Ray Data actor pool).

Example:
    >>> from raycross.evaluation import CrossEncoderRerankingEvaluator
    >>> evaluator = CrossEncoderRerankingEvaluator(
    ...     [{"query": "q", "positive": ["relevant"], "negative": ["other"]}], name="dev")
    >>> evaluator.pairs()
    [('q', 'relevant'), ('q', 'other')]
    >>> evaluator.compute_metrics([0.9, 0.1])
    {'dev_map': 1.0, 'dev_mrr@10': 1.0, 'dev_ndcg@10': 1.0}
"""

from __future__ import annotations

from raycross.evaluation import metrics
from raycross.evaluation.base import CrossEncoderEvaluator, PairScorer, predict_scorer
from raycross.evaluation.classification import CrossEncoderClassificationEvaluator
from raycross.evaluation.correlation import CrossEncoderCorrelationEvaluator
from raycross.evaluation.legacy import (
    CEBinaryAccuracyEvaluator,
    CEBinaryClassificationEvaluator,
    CECorrelationEvaluator,
    CEF1Evaluator,
    CERerankingEvaluator,
    CESoftmaxAccuracyEvaluator,
)
from raycross.evaluation.distributed import RayPairScorer, evaluate_sharded, score_pairs_with_ray, shard_range
from raycross.evaluation.nano_beir import CrossEncoderNanoBEIREvaluator
from raycross.evaluation.nanobeir_data import DATASET_NAME_TO_HUMAN_READABLE, load_nanobeir
from raycross.evaluation.reranking import CrossEncoderRerankingEvaluator
from raycross.evaluation.sequential import SequentialEvaluator

__all__ = [
    "CEBinaryAccuracyEvaluator",
    "CEBinaryClassificationEvaluator",
    "CECorrelationEvaluator",
    "CEF1Evaluator",
    "CERerankingEvaluator",
    "CESoftmaxAccuracyEvaluator",
    "DATASET_NAME_TO_HUMAN_READABLE",
    "CrossEncoderClassificationEvaluator",
    "CrossEncoderCorrelationEvaluator",
    "CrossEncoderEvaluator",
    "CrossEncoderNanoBEIREvaluator",
    "CrossEncoderRerankingEvaluator",
    "PairScorer",
    "RayPairScorer",
    "SequentialEvaluator",
    "evaluate_sharded",
    "load_nanobeir",
    "metrics",
    "predict_scorer",
    "score_pairs_with_ray",
    "shard_range",
]
