"""CrossEncoderClassificationEvaluator: accuracy / F1 / AP for 1-score models, F1 for multi-class models."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from raycross.evaluation.base import CrossEncoderEvaluator, PairScorer, check_scores, validate_pairs
from raycross.evaluation.metrics import (
    best_accuracy_and_threshold,
    best_f1_and_threshold,
    binary_average_precision,
    f1_scores,
)

logger = logging.getLogger(__name__)

_BINARY_HEADERS = ["Accuracy", "Accuracy_Threshold", "F1", "F1_Threshold", "Precision", "Recall", "Average_Precision"]
_MULTI_HEADERS = ["Macro_F1", "Micro_F1", "Weighted_F1"]


class CrossEncoderClassificationEvaluator(CrossEncoderEvaluator):
    """Classification quality of a CrossEncoder on labeled pairs.

    A model with one output (scores of shape (n,)) is a binary classifier: labels must be 0/1 and the
    metrics are ``accuracy`` (+ ``accuracy_threshold``), ``f1``, ``precision``, ``recall``
    (+ ``f1_threshold``) at the best thresholds and ``average_precision`` (primary). A model with more
    outputs predicts the argmax: ``f1_macro`` (primary), ``f1_micro``, ``f1_weighted``.
    Keys are ``f"{name}_{metric}"``; the CSV file is
    ``CrossEncoderClassificationEvaluator_{name}_results.csv``.

    Args:
        sentence_pairs: list of (text_a, text_b).
        labels: one integer label per pair.
        name: metric key prefix.
        batch_size: scoring batch size.
        show_progress_bar: progress bar while scoring (default: when logging is at INFO or DEBUG).
        write_csv: append the metrics to a CSV file in ``output_path``.
        scorer: None (``model.predict``), "ray" (a Ray Data actor pool) or a callable
            ``scorer(model, pairs, batch_size=..., show_progress_bar=...)``.
        prompt_name / prompt: the prompt put before every pair (a name in ``model.prompts`` or the text);
            neither: the model's default prompt.

    Example:
        >>> evaluator = CrossEncoderClassificationEvaluator(
        ...     [("A man eats.", "Someone eats."), ("A man eats.", "Nobody eats.")], [1, 0], name="dev")
        >>> results = evaluator(model)  # doctest: +SKIP
        >>> evaluator.primary_metric  # doctest: +SKIP
        'dev_average_precision'
    """

    def __init__(
        self,
        sentence_pairs: Sequence[Sequence[str]],
        labels: Sequence[int],
        *,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        write_csv: bool = True,
        scorer: PairScorer | str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> None:
        super().__init__(name, batch_size, show_progress_bar, write_csv, scorer, prompt_name, prompt)
        self.sentence_pairs = validate_pairs(sentence_pairs, "sentence_pairs")
        label_array = np.asarray(labels)
        if label_array.ndim != 1 or len(label_array) != len(self.sentence_pairs):
            raise ValueError(
                f"`sentence_pairs` and `labels` must have the same length, got {len(self.sentence_pairs)} pairs "
                f"and labels of shape {label_array.shape}"
            )
        if len(label_array) == 0:
            raise ValueError("`sentence_pairs` is empty: nothing to evaluate")
        if not (np.issubdtype(label_array.dtype, np.integer) or np.issubdtype(label_array.dtype, np.bool_)):
            if not np.all(np.mod(label_array.astype(np.float64), 1) == 0):
                raise ValueError(f"`labels` must be integer class ids, got dtype {label_array.dtype}")
        self.labels = label_array.astype(np.int64)
        if np.any(self.labels < 0):
            raise ValueError("`labels` must be class ids >= 0, found a negative label")
        self.csv_file = "CrossEncoderClassificationEvaluator" + (f"_{name}" if name else "") + "_results.csv"
        binary = bool(np.all(np.isin(self.labels, (0, 1))))
        # Final once the number of model outputs is known (first evaluation).
        self.primary_metric = self._prefixed("average_precision" if binary else "f1_macro")
        self.csv_headers = ["epoch", "steps", *(_BINARY_HEADERS if binary else _MULTI_HEADERS)]

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.sentence_pairs)

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = check_scores(scores, len(self.labels))
        if scores.ndim == 1:
            if not np.all(np.isin(self.labels, (0, 1))):
                raise ValueError(
                    "a one-score model needs 0/1 `labels`, found labels "
                    f"{sorted(set(self.labels.tolist()))[:5]}; use a model with one output per class"
                )
            accuracy, accuracy_threshold = best_accuracy_and_threshold(scores, self.labels)
            f1, precision, recall, f1_threshold = best_f1_and_threshold(scores, self.labels)
            metrics = {
                "accuracy": accuracy,
                "accuracy_threshold": accuracy_threshold,
                "f1": f1,
                "f1_threshold": f1_threshold,
                "precision": precision,
                "recall": recall,
                "average_precision": binary_average_precision(self.labels, scores),
            }
            logger.info("Accuracy:          %.2f\t(Threshold: %.4f)", accuracy * 100, accuracy_threshold)
            logger.info("F1:                %.2f\t(Threshold: %.4f)", f1 * 100, f1_threshold)
            logger.info("Precision:         %.2f", precision * 100)
            logger.info("Recall:            %.2f", recall * 100)
            logger.info("Average Precision: %.2f", metrics["average_precision"] * 100)
            self.csv_headers = ["epoch", "steps", *_BINARY_HEADERS]
            self.primary_metric = "average_precision"
        elif scores.ndim == 2:
            if self.labels.max() >= scores.shape[1]:
                raise ValueError(
                    f"`labels` go up to {int(self.labels.max())} but the model has {scores.shape[1]} outputs"
                )
            metrics = f1_scores(self.labels, np.argmax(scores, axis=1))
            logger.info("Macro F1:           %.2f", metrics["f1_macro"] * 100)
            logger.info("Micro F1:           %.2f", metrics["f1_micro"] * 100)
            logger.info("Weighted F1:        %.2f", metrics["f1_weighted"] * 100)
            self.csv_headers = ["epoch", "steps", *_MULTI_HEADERS]
            self.primary_metric = "f1_macro"
        else:
            raise ValueError(f"`scores` must have shape (n,) or (n, num_labels), got {tuple(scores.shape)}")
        return metrics, list(metrics.values())
