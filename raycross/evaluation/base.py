"""The evaluator base class: score pairs (anywhere), then compute metrics once.

Every raycross evaluator splits evaluation into two steps so that the expensive part can run anywhere:

1. ``pairs()``: the (text_a, text_b) pairs to score, in a fixed order;
2. ``compute_metrics(scores, ...)``: the metrics from the scores of exactly those pairs (plus CSV
   output and model card data).

``__call__(model)`` does both in one process (``model.predict``) or through a ``scorer``: a callable
``scorer(model, pairs, batch_size=..., show_progress_bar=...) -> np.ndarray`` such as
:class:`raycross.evaluation.RayPairScorer` (a Ray Data actor pool). The trainer can instead shard
``pairs()`` over its workers and reduce the metrics once (see :mod:`raycross.evaluation.distributed`).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import MutableMapping, Sequence
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

Pair = tuple[str, str]


class PairScorer(Protocol):
    """Anything that scores pairs with a model: ``scorer(model, pairs, batch_size=32, show_progress_bar=False)``,
    plus ``prompt=...`` when the evaluator sets a prompt."""

    def __call__(
        self, model: Any, pairs: Sequence[Pair], batch_size: int = 32, show_progress_bar: bool | None = None,
        prompt: str | None = None,
    ) -> np.ndarray: ...


def predict_scorer(
    model: Any, pairs: Sequence[Pair], batch_size: int = 32, show_progress_bar: bool | None = None,
    prompt: str | None = None,
) -> np.ndarray:
    """Score pairs in this process with ``model.predict`` (the default scorer).

    Example:
        >>> scores = predict_scorer(model, [("q", "doc")], batch_size=16)  # doctest: +SKIP
    """
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.float32)
    extra = {} if prompt is None else {"prompt": prompt}  # predict applies the model's default prompt
    scores = model.predict(
        list(pairs), batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_numpy=True, **extra
    )
    return np.asarray(scores)


def resolve_scorer(scorer: PairScorer | str | None) -> PairScorer:
    """Turn the ``scorer`` argument of an evaluator into a callable: None -> ``predict_scorer``, "ray" -> a Ray pool.

    Example:
        >>> resolve_scorer(None) is predict_scorer
        True
    """
    if scorer is None:
        return predict_scorer
    if isinstance(scorer, str):
        if scorer == "ray":
            from raycross.evaluation.distributed import RayPairScorer

            return RayPairScorer()
        raise ValueError(f"`scorer` must be None, 'ray' or a callable, got the string {scorer!r}")
    if not callable(scorer):
        raise TypeError(f"`scorer` must be None, 'ray' or a callable, got {type(scorer).__name__}")
    return scorer


def validate_pairs(pairs: Any, argument: str = "sentence_pairs") -> list[Pair]:
    """Check that `pairs` is a sequence of (str, str) and return it as a list of tuples.

    Example:
        >>> validate_pairs([["a", "b"]])
        [('a', 'b')]
    """
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"`{argument}` must be a list of (text, text) pairs, got {type(pairs).__name__}")
    checked = []
    for index, pair in enumerate(pairs):
        if (
            isinstance(pair, (str, bytes))
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(text, str) for text in pair)
        ):
            raise TypeError(f"`{argument}[{index}]` must be a pair of two strings, got {pair!r:.120}")
        checked.append((pair[0], pair[1]))
    return checked


def epoch_text(epoch: int, steps: int) -> str:
    """The " after epoch 1" / " in epoch 1 after 50 steps" suffix used in the evaluators' log lines."""
    if epoch == -1:
        return ""
    return f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"


class CrossEncoderEvaluator:
    """Base class of the raycross evaluators (the sentence-transformers ``BaseEvaluator`` contract).

    Attributes:
        name: prefix of every metric key, ``f"{name}_{metric}"``.
        primary_metric: the key used for model selection (prefixed after the first evaluation).
        greater_is_better: whether a higher primary metric is better.
        prompt_name / prompt: the prompt ``predict`` puts before every pair (a name in ``model.prompts``, or
            the text); neither means the model's default prompt, as in sentence-transformers.

    Subclasses implement ``pairs()`` and ``_compute(scores) -> (metrics, csv_row)``; the base class
    writes the CSV file, prefixes the keys and stores the model card data.

    Example:
        >>> from raycross.evaluation import CrossEncoderCorrelationEvaluator
        >>> evaluator = CrossEncoderCorrelationEvaluator(
        ...     [("a", "b"), ("a", "c"), ("a", "d")], [0.1, 0.5, 0.9], name="sts")
        >>> pairs = evaluator.pairs()  # score them anywhere (shards, Ray actors), keeping their order
        >>> metrics = evaluator.compute_metrics([0.2, 0.4, 0.8])
        >>> {key: round(value, 4) for key, value in metrics.items()}
        {'sts_pearson': 0.982, 'sts_spearman': 1.0}
    """

    csv_file: str = ""
    csv_headers: list[str] = []

    def __init__(
        self,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        write_csv: bool = True,
        scorer: PairScorer | str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"`name` must be a string, got {type(name).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
        self.name = name
        self.batch_size = batch_size
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv
        self.scorer = scorer
        for arg, value in (("prompt_name", prompt_name), ("prompt", prompt)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"`{arg}` must be a string or None, got {type(value).__name__}")
        self.prompt_name = prompt_name
        self.prompt = prompt
        self.greater_is_better = True
        self.primary_metric: str | None = None

    # ------------------------------------------------------------------ the two steps
    @property
    def supports_pairs(self) -> bool:
        """Whether ``pairs()`` / ``compute_metrics()`` are available (sharded or remote scoring)."""
        return type(self).pairs is not CrossEncoderEvaluator.pairs

    def pairs(self) -> list[Pair]:
        """The pairs to score, in the order `compute_metrics` expects their scores."""
        raise NotImplementedError(f"{type(self).__name__} does not define pairs()")

    def num_pairs(self) -> int:
        """``len(self.pairs())``."""
        return len(self.pairs())

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any] | None]:
        """Unprefixed metrics and the CSV row values (after epoch and steps) for the scores of `pairs()`."""
        raise NotImplementedError(f"{type(self).__name__} does not define _compute()")

    def compute_metrics(
        self,
        scores: Sequence[float] | np.ndarray,
        model: Any = None,
        output_path: str | None = None,
        epoch: int = -1,
        steps: int = -1,
    ) -> dict[str, float]:
        """Metrics ``{f"{name}_{metric}": value}`` from the scores of ``pairs()`` (same order).

        Writes the CSV file when `output_path` is given and stores the metrics in `model`'s model card
        data when `model` is given.

        Example:
            >>> metrics = evaluator.compute_metrics(model.predict(evaluator.pairs()))  # doctest: +SKIP
        """
        metrics, csv_row = self._compute(np.asarray(scores))
        if output_path is not None and self.write_csv and csv_row is not None:
            self.write_csv_row(output_path, [epoch, steps, *csv_row])
        card_metrics = self._model_card_metrics(metrics)
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        if model is not None:
            card_metrics = self.prefix_name_to_metrics(card_metrics, self.name)
            self.store_metrics_in_model_card_data(model, card_metrics, epoch, steps)
        return metrics

    def _model_card_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The (unprefixed) values to show in the model card; the metrics themselves by default."""
        return metrics

    def score_kwargs(self, model: Any) -> dict[str, Any]:
        """``{"prompt": text}`` when this evaluator sets a prompt (checked against the model's prompt names),
        else ``{}`` (the model's default prompt applies)."""
        if self.prompt is None and self.prompt_name is None:
            return {}
        from raycross.prompts import resolve_prompt

        prompts = getattr(model, "prompts", {}) or {}
        return {"prompt": resolve_prompt(prompts, None, self.prompt, self.prompt_name) or ""}

    def score(self, model: Any, pairs: Sequence[Pair]) -> np.ndarray:
        """Score `pairs` with `model` through this evaluator's scorer (``model.predict`` by default)."""
        return np.asarray(
            resolve_scorer(self.scorer)(
                model, pairs, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar,
                **self.score_kwargs(model),
            )
        )

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluate `model`: score ``pairs()``, then ``compute_metrics``. Returns the prefixed metrics.

        Example:
            >>> results = evaluator(model)  # doctest: +SKIP
            >>> results[evaluator.primary_metric]  # doctest: +SKIP
        """
        logger.info(
            "%s: Evaluating the model on the %s dataset%s:", type(self).__name__, self.name, epoch_text(epoch, steps)
        )
        scores = self.score(model, self.pairs())
        return self.compute_metrics(scores, model=model, output_path=output_path, epoch=epoch, steps=steps)

    def _prefixed(self, metric: str) -> str:
        """`metric` with this evaluator's name prefix (so `primary_metric` is the final key from the start)."""
        return f"{self.name}_{metric}" if self.name and not metric.startswith(self.name + "_") else metric

    # ------------------------------------------------------------------ sentence-transformers helpers
    def prefix_name_to_metrics(self, metrics: dict[str, Any], name: str) -> dict[str, Any]:
        """Prefix keys with ``f"{name}_"`` (and `primary_metric` once); numbers become Python floats."""

        def maybe_float(value: Any) -> Any:
            try:
                return float(value)
            except (TypeError, ValueError):
                return value

        if not name:
            return {key: maybe_float(value) for key, value in metrics.items()}
        prefixed = {f"{name}_{key}": maybe_float(value) for key, value in metrics.items()}
        if self.primary_metric is not None and not self.primary_metric.startswith(name + "_"):
            self.primary_metric = f"{name}_{self.primary_metric}"
        return prefixed

    def store_metrics_in_model_card_data(
        self, model: Any, metrics: dict[str, Any], epoch: int = 0, step: int = 0
    ) -> None:
        """Record the metrics in ``model.model_card_data`` (a dict in raycross, or an object with
        ``set_evaluation_metrics`` as in sentence-transformers). The dict form keeps, under
        ``"eval_results"``, the latest entry per (evaluator class, name)."""
        card = getattr(model, "model_card_data", None)
        if card is None:
            return
        setter = getattr(card, "set_evaluation_metrics", None)
        if callable(setter):
            setter(self, metrics, epoch, step)
            return
        if isinstance(card, MutableMapping):
            entry = {
                "evaluator": type(self).__name__,
                "name": self.name,
                "description": self.description,
                "primary_metric": self.primary_metric,
                "metrics": dict(metrics),
                "config": self.get_config_dict(),
                "epoch": epoch,
                "step": step,
            }
            results = [
                old
                for old in card.get("eval_results", [])
                if (old.get("evaluator"), old.get("name")) != (entry["evaluator"], entry["name"])
            ]
            card["eval_results"] = [*results, entry]

    def write_csv_row(self, output_path: str, row: list[Any]) -> None:
        """Append `row` to ``output_path/csv_file``, writing `csv_headers` first when the file is new."""
        os.makedirs(output_path, exist_ok=True)
        csv_path = os.path.join(output_path, self.csv_file)
        exists = os.path.isfile(csv_path)
        with open(csv_path, newline="", mode="a" if exists else "w", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if not exists:
                writer.writerow(self.csv_headers)
            writer.writerow(row)

    @property
    def description(self) -> str:
        """Human-readable kind: ``CrossEncoderRerankingEvaluator`` -> ``Cross Encoder Reranking``."""
        class_name = type(self).__name__
        if class_name.startswith("CE"):
            class_name = "CrossEncoder" + class_name[2:]
        class_name = class_name.split("Evaluator")[0]
        return re.sub(r"([a-z])([A-Z])", r"\g<1> \g<2>", class_name)

    def get_config_dict(self) -> dict[str, Any]:
        """Meaningful configuration values for the model card."""
        return {}


def check_scores(scores: np.ndarray, expected: int, argument: str = "scores") -> np.ndarray:
    """Validate the scores of `expected` pairs; a (n, 1) array becomes (n,)."""
    array = np.asarray(scores)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 0 or len(array) != expected:
        found = "a scalar" if array.ndim == 0 else f"{len(array)}"
        raise ValueError(f"`{argument}` must hold one entry per pair ({expected}), found {found}")
    return array


def one_score_per_pair(scores: np.ndarray, evaluator: str) -> np.ndarray:
    """Require a 1-D score array (a model with num_labels=1)."""
    if scores.ndim != 1:
        raise ValueError(
            f"{evaluator} needs one score per pair (a model with num_labels=1), "
            f"got scores of shape {tuple(scores.shape)}"
        )
    return scores.astype(np.float64)

