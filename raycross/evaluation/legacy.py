"""The pre-v4 sentence-transformers cross-encoder evaluators, kept for old training scripts.

Each class takes its old constructor arguments, returns its old single float from ``evaluator(model)``
(``from_input_examples`` too), writes its old CSV file, and warns (``DeprecationWarning``, on
construction, as sentence-transformers 6.2 does) naming the evaluator to use instead. They also offer
``pairs()`` / ``compute_metrics()`` so the trainer can shard them like the new evaluators; the float is
``compute_metrics(...)[primary_metric]``.

=============================  ===============================  =========================================
old evaluator                  returns                          use instead
=============================  ===============================  =========================================
CEBinaryAccuracyEvaluator      accuracy at ``threshold``        CrossEncoderClassificationEvaluator
CEBinaryClassificationEval.    average precision                CrossEncoderClassificationEvaluator
CEF1Evaluator                  binary F1, or mean(micro, macro) CrossEncoderClassificationEvaluator
CESoftmaxAccuracyEvaluator     accuracy of the argmax           CrossEncoderClassificationEvaluator
CECorrelationEvaluator         Spearman correlation             CrossEncoderCorrelationEvaluator
CERerankingEvaluator           MRR@at_k                         CrossEncoderRerankingEvaluator
=============================  ===============================  =========================================

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     evaluator = CEBinaryAccuracyEvaluator([("a", "b"), ("a", "c")], [1, 0], name="dev")
    >>> "CrossEncoderClassificationEvaluator" in str(caught[0].message)
    True
    >>> evaluator.compute_metrics([0.9, 0.7])
    {'dev_accuracy': 0.5}
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raycross.evaluation.base import CrossEncoderEvaluator, Pair, check_scores, one_score_per_pair, validate_pairs
from raycross.evaluation.metrics import (
    best_accuracy_and_threshold,
    best_f1_and_threshold,
    binary_average_precision,
    f1_scores,
    ndcg,
    pearson,
    spearman,
)

logger = logging.getLogger(__name__)

_CLASSIFICATION_HINT = (
    "This evaluator has been deprecated in favor of the more general CrossEncoderClassificationEvaluator. "
    "Please use CrossEncoderClassificationEvaluator instead, which supports both binary and multi-class "
    "evaluation. It accepts approximately the same inputs as this evaluator."
)


def _warn(message: str) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=3)


class _LegacyEvaluator(CrossEncoderEvaluator):
    """Old call contract: ``evaluator(model, output_path=None, epoch=-1, steps=-1) -> float``."""

    deprecation_message = ""

    def __init__(self, name: str, batch_size: int, show_progress_bar: bool | None, write_csv: bool) -> None:
        _warn(self.deprecation_message)
        super().__init__(name, batch_size, bool(show_progress_bar), write_csv)

    @classmethod
    def from_input_examples(cls, examples: Sequence[Any], **kwargs: Any) -> _LegacyEvaluator:
        """Build from ``InputExample`` objects (``texts`` = the pair, ``label``).

        Example:
            >>> from raycross import InputExample
            >>> CEBinaryAccuracyEvaluator.from_input_examples([InputExample(texts=["a", "b"], label=1)])  # doctest: +SKIP
        """
        pairs = [example.texts for example in examples]
        labels = [example.label for example in examples]
        return cls(pairs, labels, **kwargs)

    def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1) -> float:  # type: ignore[override]
        metrics = super().__call__(model, output_path=output_path, epoch=epoch, steps=steps)
        return float(metrics[self.primary_metric])

    def _setup(self, pairs: Any, labels: Any, csv_stem: str, headers: list[str], primary: str) -> None:
        self.sentence_pairs = validate_pairs(pairs, "sentence_pairs")
        self.labels = np.asarray(labels)
        if self.labels.ndim != 1 or len(self.labels) != len(self.sentence_pairs):
            raise ValueError(
                f"`sentence_pairs` and `labels` must have the same length, got {len(self.sentence_pairs)} pairs "
                f"and labels of shape {self.labels.shape}"
            )
        self.csv_file = csv_stem + (f"_{self.name}" if self.name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", *headers]
        self.primary_metric = self._prefixed(primary)

    def pairs(self) -> list[Pair]:
        return list(self.sentence_pairs)



class CEBinaryAccuracyEvaluator(_LegacyEvaluator):
    """Accuracy of ``score > threshold`` against 0/1 labels (deprecated).

    Example:
        >>> CEBinaryAccuracyEvaluator([("a", "b")], [1], threshold=0.5).compute_metrics([0.7])  # doctest: +SKIP
        {'accuracy': 1.0}
    """

    deprecation_message = _CLASSIFICATION_HINT

    def __init__(
        self, sentence_pairs: Sequence[Sequence[str]], labels: Sequence[int], name: str = "",
        threshold: float = 0.5, write_csv: bool = True,
    ) -> None:
        super().__init__(name, 32, False, write_csv)
        self.threshold = float(threshold)
        self._setup(sentence_pairs, labels, "CEBinaryAccuracyEvaluator", ["Accuracy"], "accuracy")

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = one_score_per_pair(check_scores(scores, len(self.labels)), type(self).__name__)
        accuracy = float(np.mean((scores > self.threshold) == self.labels))
        logger.info("Accuracy: %.2f", accuracy * 100)
        return {"accuracy": accuracy}, [accuracy]

    def get_config_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold}


class CEBinaryClassificationEvaluator(_LegacyEvaluator):
    """Best-threshold accuracy and F1, precision, recall and average precision (returned) on 0/1 labels (deprecated)."""

    deprecation_message = _CLASSIFICATION_HINT

    def __init__(
        self, sentence_pairs: Sequence[Sequence[str]], labels: Sequence[int], name: str = "",
        show_progress_bar: bool = False, write_csv: bool = True,
    ) -> None:
        super().__init__(name, 32, show_progress_bar, write_csv)
        self._setup(sentence_pairs, labels, "CEBinaryClassificationEvaluator",
                    ["Accuracy", "Accuracy_Threshold", "F1", "F1_Threshold", "Precision", "Recall",
                     "Average_Precision"], "average_precision")
        if not np.all(np.isin(self.labels, (0, 1))):
            raise ValueError(f"`labels` must be 0 or 1, found {sorted(set(self.labels.tolist()))[:5]}")

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = one_score_per_pair(check_scores(scores, len(self.labels)), type(self).__name__)
        accuracy, accuracy_threshold = best_accuracy_and_threshold(scores, self.labels)
        f1, precision, recall, f1_threshold = best_f1_and_threshold(scores, self.labels)
        metrics = {"accuracy": accuracy, "accuracy_threshold": accuracy_threshold, "f1": f1,
                   "f1_threshold": f1_threshold, "precision": precision, "recall": recall,
                   "average_precision": binary_average_precision(self.labels, scores)}
        logger.info("Accuracy: %.2f, F1: %.2f, Average Precision: %.2f", accuracy * 100, f1 * 100,
                    metrics["average_precision"] * 100)
        return metrics, list(metrics.values())


class CEF1Evaluator(_LegacyEvaluator):
    """F1 of the argmax class: binary F1 for 2 labels, else the mean of micro and macro F1 (deprecated)."""

    deprecation_message = _CLASSIFICATION_HINT

    def __init__(
        self, sentence_pairs: Sequence[Sequence[str]], labels: Sequence[int], *, batch_size: int = 32,
        show_progress_bar: bool = False, name: str = "", write_csv: bool = True,
    ) -> None:
        super().__init__(name, batch_size, show_progress_bar, write_csv)
        self._setup(sentence_pairs, labels, "CEF1Evaluator", [], "f1")
        classes = np.unique(self.labels).size
        if classes < 2:
            raise ValueError("Got only one distinct label. Please make sure there are at least two labels.")
        self.binary = classes == 2
        self.csv_headers += ["Binary_F1"] if self.binary else ["Micro_F1", "Macro_F1"]

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = check_scores(scores, len(self.labels))
        if scores.ndim != 2:
            raise ValueError(f"CEF1Evaluator needs one score per class (num_labels >= 2), got shape {scores.shape}")
        predicted = np.argmax(scores, axis=1)
        if self.binary:  # F1 of the positive class 1 (sklearn's average="binary")
            tp = float(np.sum((predicted == 1) & (self.labels == 1)))
            denominator = tp + np.sum(predicted == 1) + np.sum(self.labels == 1)
            values = [2 * tp / denominator if denominator else 0.0]
        else:
            f1 = f1_scores(self.labels, predicted)
            values = [f1["f1_micro"], f1["f1_macro"]]
        metrics = {"f1": float(np.mean(values))}
        logger.info("F1: %.2f", metrics["f1"] * 100)
        return metrics, values


class CESoftmaxAccuracyEvaluator(_LegacyEvaluator):
    """Accuracy of the argmax of the softmax scores against class ids (deprecated)."""

    deprecation_message = _CLASSIFICATION_HINT

    def __init__(
        self, sentence_pairs: Sequence[Sequence[str]], labels: Sequence[int], name: str = "", write_csv: bool = True,
    ) -> None:
        super().__init__(name, 32, False, write_csv)
        self._setup(sentence_pairs, labels, "CESoftmaxAccuracyEvaluator", ["Accuracy"], "accuracy")

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = check_scores(scores, len(self.labels))
        if scores.ndim != 2:
            raise ValueError(f"CESoftmaxAccuracyEvaluator needs one score per class, got shape {scores.shape}")
        accuracy = float(np.mean(np.argmax(scores, axis=1) == self.labels))  # softmax keeps the argmax
        logger.info("Accuracy: %.2f", accuracy * 100)
        return {"accuracy": accuracy}, [accuracy]


class CECorrelationEvaluator(_LegacyEvaluator):
    """Pearson and Spearman (returned) correlation of scores with gold similarity scores (deprecated)."""

    deprecation_message = ("The CECorrelationEvaluator has been renamed to CrossEncoderCorrelationEvaluator. "
                           "Please use CrossEncoderCorrelationEvaluator instead.")

    def __init__(
        self, sentence_pairs: Sequence[Sequence[str]], scores: Sequence[float], name: str = "", write_csv: bool = True,
    ) -> None:
        super().__init__(name, 32, False, write_csv)
        self._setup(sentence_pairs, np.asarray(scores, dtype=np.float64), "CECorrelationEvaluator",
                    ["Pearson_Correlation", "Spearman_Correlation"], "spearman")
        self.scores = self.labels

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = one_score_per_pair(check_scores(scores, len(self.labels)), type(self).__name__)
        metrics = {"pearson": pearson(self.labels, scores), "spearman": spearman(self.labels, scores)}
        logger.info("Correlation: Pearson %.4f, Spearman %.4f", metrics["pearson"], metrics["spearman"])
        return metrics, list(metrics.values())


class CERerankingEvaluator(_LegacyEvaluator):
    """MRR@at_k (returned) and NDCG@at_k over ``{"query", "positive", "negative"}`` samples (deprecated).

    Samples without a positive or without a negative are skipped, as before.
    """

    deprecation_message = ("The CERerankingEvaluator has been renamed to CrossEncoderRerankingEvaluator. "
                           "Please use CrossEncoderRerankingEvaluator instead.")

    def __init__(
        self, samples: Sequence[Mapping[str, Any]] | Mapping[Any, Mapping[str, Any]], at_k: int = 10, name: str = "",
        write_csv: bool = True, mrr_at_k: int | None = None,
    ) -> None:
        super().__init__(name, 32, False, write_csv)
        if mrr_at_k is not None:
            logger.warning("The `mrr_at_k` parameter has been deprecated; please use `at_k=%s` instead.", mrr_at_k)
            at_k = mrr_at_k
        if isinstance(at_k, bool) or not isinstance(at_k, int) or at_k < 1:
            raise ValueError(f"`at_k` must be an integer >= 1, got {at_k!r}")
        self.at_k = at_k
        self.samples = list(samples.values()) if isinstance(samples, Mapping) else list(samples)
        self.groups: list[tuple[str, list[str], list[int]]] = []
        for index, sample in enumerate(self.samples):
            if not isinstance(sample, Mapping) or not {"query", "positive", "negative"} <= set(sample):
                raise ValueError(f"samples[{index}]: expected a dict with 'query', 'positive' and 'negative', "
                                 f"found {sample!r:.120}")
            positive, negative = list(sample["positive"]), list(sample["negative"])
            if positive and negative:
                self.groups.append((sample["query"], positive + negative, [1] * len(positive) + [0] * len(negative)))
        self.csv_file = "CERerankingEvaluator" + (f"_{name}" if name else "") + f"_results_@{at_k}.csv"
        self.csv_headers = ["epoch", "steps", f"MRR@{at_k}", f"NDCG@{at_k}"]
        self.primary_metric = self._prefixed(f"mrr@{at_k}")

    def pairs(self) -> list[Pair]:
        return [(query, doc) for query, docs, _ in self.groups for doc in docs]

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = one_score_per_pair(check_scores(scores, sum(len(d) for _, d, _ in self.groups)), type(self).__name__)
        mrrs, ndcgs, offset = [], [], 0
        for _, docs, relevant in self.groups:
            group = scores[offset : offset + len(docs)]
            offset += len(docs)
            top = np.argsort(-group, kind="stable")[: self.at_k]
            mrrs.append(next((1.0 / (rank + 1) for rank, i in enumerate(top) if relevant[i]), 0.0))
            ndcgs.append(ndcg(relevant, group, k=self.at_k))
        metrics = {f"mrr@{self.at_k}": float(np.mean(mrrs)) if mrrs else 0.0,
                   f"ndcg@{self.at_k}": float(np.mean(ndcgs)) if ndcgs else 0.0}
        logger.info("Queries: %d, MRR@%d: %.2f", len(self.groups), self.at_k, metrics[f"mrr@{self.at_k}"] * 100)
        return metrics, list(metrics.values())

    def get_config_dict(self) -> dict[str, Any]:
        return {"at_k": self.at_k}


__all__ = [
    "CEBinaryAccuracyEvaluator",
    "CEBinaryClassificationEvaluator",
    "CECorrelationEvaluator",
    "CEF1Evaluator",
    "CERerankingEvaluator",
    "CESoftmaxAccuracyEvaluator",
]
