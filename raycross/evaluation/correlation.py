"""CrossEncoderCorrelationEvaluator: Pearson and Spearman correlation of scores with gold scores."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from raycross.evaluation.base import (
    CrossEncoderEvaluator,
    PairScorer,
    check_scores,
    one_score_per_pair,
    validate_pairs,
)
from raycross.evaluation.metrics import pearson, spearman

logger = logging.getLogger(__name__)


class CrossEncoderCorrelationEvaluator(CrossEncoderEvaluator):
    """Correlation between the model's score of each pair and a gold score.

    Metrics: ``pearson`` and ``spearman`` (primary; ties get average ranks), keys ``f"{name}_{metric}"``,
    CSV file ``CrossEncoderCorrelationEvaluator_{name}_results.csv``. Needs a 1-output model.

    Args:
        sentence_pairs: list of (text_a, text_b).
        scores: one gold score per pair.
        name, batch_size, show_progress_bar, write_csv, scorer, prompt_name, prompt: as in every
            raycross evaluator.

    Example:
        >>> evaluator = CrossEncoderCorrelationEvaluator(
        ...     [("A dog runs.", "A dog is running."), ("A dog runs.", "A cat sleeps.")], [0.9, 0.1], name="sts")
        >>> evaluator.primary_metric
        'sts_spearman'
        >>> results = evaluator(model)  # doctest: +SKIP
        >>> # {"sts_pearson": ..., "sts_spearman": ...}
    """

    def __init__(
        self,
        sentence_pairs: Sequence[Sequence[str]],
        scores: Sequence[float],
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
        gold = np.asarray(scores, dtype=np.float64)
        if gold.ndim != 1 or len(gold) != len(self.sentence_pairs):
            raise ValueError(
                f"`sentence_pairs` and `scores` must have the same length, got {len(self.sentence_pairs)} pairs "
                f"and scores of shape {gold.shape}"
            )
        if len(gold) < 2:
            raise ValueError(f"correlation needs at least 2 pairs, got {len(gold)}")
        if not np.all(np.isfinite(gold)):
            raise ValueError("`scores` must be finite numbers, found NaN or infinity")
        self.scores = gold
        self.csv_file = "CrossEncoderCorrelationEvaluator" + (f"_{name}" if name else "") + "_results.csv"
        self.csv_headers = ["epoch", "steps", "Pearson_Correlation", "Spearman_Correlation"]
        self.primary_metric = self._prefixed("spearman")

    @classmethod
    def from_input_examples(cls, examples: Sequence[Any], **kwargs: Any) -> CrossEncoderCorrelationEvaluator:
        """Build from ``InputExample``-like objects (``.texts`` = [text_a, text_b], ``.label`` = gold score).

        Example:
            >>> from types import SimpleNamespace as Example
            >>> evaluator = CrossEncoderCorrelationEvaluator.from_input_examples(
            ...     [Example(texts=["a", "b"], label=0.2), Example(texts=["a", "c"], label=0.8)], name="sts")
            >>> evaluator.pairs()
            [('a', 'b'), ('a', 'c')]
        """
        return cls([example.texts for example in examples], [example.label for example in examples], **kwargs)

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.sentence_pairs)

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        predicted = one_score_per_pair(check_scores(scores, len(self.scores)), type(self).__name__)
        eval_pearson = pearson(self.scores, predicted)
        eval_spearman = spearman(self.scores, predicted)
        logger.info("Correlation:\tPearson: %.4f\tSpearman: %.4f", eval_pearson, eval_spearman)
        return {"pearson": eval_pearson, "spearman": eval_spearman}, [eval_pearson, eval_spearman]
