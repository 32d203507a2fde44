"""SequentialEvaluator: run several evaluators and combine their primary metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from raycross.evaluation.base import CrossEncoderEvaluator, Pair

logger = logging.getLogger(__name__)


def supports_pairs(evaluator: Any) -> bool:
    """Whether `evaluator` exposes ``pairs()`` / ``compute_metrics()`` (any raycross evaluator does)."""
    return isinstance(evaluator, CrossEncoderEvaluator) and evaluator.supports_pairs


def split_scores(scores: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Cut the scores of concatenated pair lists back into one array per list."""
    bounds = np.cumsum([0, *sizes])
    return [scores[bounds[i] : bounds[i + 1]] for i in range(len(sizes))]


class SequentialEvaluator(CrossEncoderEvaluator):
    """Run evaluators one after another; ``sequential_score`` = `main_score_function` of their primary metrics.

    The results hold every sub-evaluator's keys plus ``sequential_score`` (the primary metric). A
    sub-evaluator returning a bare number is stored as ``evaluator_{index}``. When every sub-evaluator
    is a raycross evaluator, ``pairs()`` concatenates their pairs so that all of them can be scored in one
    (sharded) pass and ``compute_metrics`` splits the scores back.

    Args:
        evaluators: the sub-evaluators (raycross evaluators or any ``evaluator(model, output_path, epoch, steps)``).
        main_score_function: list of primary metric values -> one score; default: the last one.

    Example:
        >>> evaluator = SequentialEvaluator([classification_evaluator, reranking_evaluator])  # doctest: +SKIP
        >>> results = evaluator(model)  # doctest: +SKIP
        >>> results["sequential_score"] == results[reranking_evaluator.primary_metric]  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        evaluators: Iterable[Any],
        main_score_function: Callable[[list[float]], float] = lambda scores: scores[-1],
    ) -> None:
        super().__init__(name="", write_csv=False)
        self.evaluators = list(evaluators)
        for index, evaluator in enumerate(self.evaluators):
            if not callable(evaluator):
                raise TypeError(
                    f"`evaluators[{index}]` must be an evaluator (callable), got {type(evaluator).__name__}"
                )
        self.main_score_function = main_score_function
        self.primary_metric = "sequential_score"

    @property
    def supports_pairs(self) -> bool:
        # one scoring pass over every evaluator's pairs needs one prompt setting for all of them
        prompts = {(getattr(e, "prompt_name", None), getattr(e, "prompt", None)) for e in self.evaluators}
        return len(prompts) <= 1 and all(supports_pairs(evaluator) for evaluator in self.evaluators)

    def score_kwargs(self, model: Any) -> dict[str, Any]:
        return self.evaluators[0].score_kwargs(model) if self.evaluators else {}

    def pairs(self) -> list[Pair]:
        if not self.supports_pairs:
            bad = next((type(e).__name__ for e in self.evaluators if not supports_pairs(e)), None)
            if bad is None:
                raise TypeError("SequentialEvaluator.pairs() needs one prompt setting for all its evaluators")
            raise TypeError(f"SequentialEvaluator.pairs() needs raycross evaluators, but one is a {bad}")
        return [pair for evaluator in self.evaluators for pair in evaluator.pairs()]

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        evaluations = [evaluator(model, output_path, epoch, steps) for evaluator in self.evaluators]
        return self._combine(evaluations)

    def compute_metrics(
        self,
        scores: Sequence[float] | np.ndarray,
        model: Any = None,
        output_path: str | None = None,
        epoch: int = -1,
        steps: int = -1,
    ) -> dict[str, float]:
        sizes = [evaluator.num_pairs() for evaluator in self.evaluators]
        scores = np.asarray(scores)
        if scores.ndim == 0 or len(scores) != sum(sizes):
            found = "a scalar" if scores.ndim == 0 else len(scores)
            raise ValueError(f"`scores` must hold one entry per pair ({sum(sizes)}), found {found}")
        evaluations = [
            evaluator.compute_metrics(part, model=model, output_path=output_path, epoch=epoch, steps=steps)
            for evaluator, part in zip(self.evaluators, split_scores(scores, sizes))
        ]
        return self._combine(evaluations)

    def _combine(self, evaluations: list[Any]) -> dict[str, float]:
        results: dict[str, Any] = {}
        primary_scores = []
        for index, (evaluator, evaluation) in enumerate(zip(self.evaluators, evaluations)):
            if not isinstance(evaluation, dict):
                primary_scores.append(evaluation)
                evaluation = {f"evaluator_{index}": evaluation}
            else:
                primary = getattr(evaluator, "primary_metric", None)
                primary_scores.append(evaluation[primary] if primary in evaluation else next(iter(evaluation.values())))
            results.update(evaluation)
        self.primary_metric = "sequential_score"
        results["sequential_score"] = self.main_score_function(primary_scores) if primary_scores else 0.0
        return results
