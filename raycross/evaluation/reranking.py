"""CrossEncoderRerankingEvaluator: MAP, MRR@k and NDCG@k of reranked candidate lists."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raycross.evaluation.base import CrossEncoderEvaluator, PairScorer, check_scores, one_score_per_pair
from raycross.evaluation.metrics import ranking_metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _RerankQuery:
    """One validated sample: the candidates to score with their gains, and what the metrics need."""

    query: str
    docs: list[str]  # candidates to score (empty when no positive is among them: metrics are 0)
    gains: np.ndarray
    missed_gains: np.ndarray  # positives that are not candidates (realistic mode only)
    base: tuple[float, float, float] | None  # (map, mrr@k, ndcg@k) of the input order, `documents` only
    num_positives: int
    num_negatives: int


def _positive_gains(positive: Any, index: int) -> dict[str, float]:
    """`positive` as {document: gain > 0}: a string, a list of strings (gain 1) or a {doc: gain} mapping."""
    if isinstance(positive, str):
        gains = {positive: 1.0}
    elif isinstance(positive, Mapping):
        gains = {}
        for doc, gain in positive.items():
            if not isinstance(doc, str):
                raise TypeError(f"samples[{index}]['positive'] keys must be document strings, got {type(doc).__name__}")
            if isinstance(gain, bool) or not isinstance(gain, (int, float, np.integer, np.floating)):
                raise TypeError(f"samples[{index}]['positive'][{doc!r:.60}] must be a number (a gain), got {gain!r}")
            if not np.isfinite(gain) or gain < 0:
                raise ValueError(f"samples[{index}]['positive'][{doc!r:.60}] must be a finite gain >= 0, got {gain}")
            if gain > 0:  # a gain of 0 is a judged non-relevant document: just not a positive
                gains[doc] = float(gain)
    elif isinstance(positive, Sequence):
        if not all(isinstance(doc, str) for doc in positive):
            raise TypeError(f"samples[{index}]['positive'] must hold strings only")
        gains = dict.fromkeys(positive, 1.0)
    else:
        raise TypeError(
            f"samples[{index}]['positive'] must be a string, a list of strings or a {{document: gain}} dict, "
            f"got {type(positive).__name__}"
        )
    if not gains:
        raise ValueError(f"samples[{index}] has no positives: 'positive' must name at least one relevant document")
    return gains


def _text_list(value: Any, key: str, index: int) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"samples[{index}]['{key}'] must be a list of strings, got {type(value).__name__}")
    if not all(isinstance(doc, str) for doc in value):
        raise TypeError(f"samples[{index}]['{key}'] must hold strings only")
    return list(value)


def _input_order(n: int) -> np.ndarray:
    return np.arange(n, 0, -1, dtype=np.float64)


def build_rerank_query(sample: Any, index: int, at_k: int, always_rerank_positives: bool) -> _RerankQuery:
    """Validate one sample and lay out its candidates, gains and (for `documents`) base metrics."""
    if not isinstance(sample, Mapping):
        raise TypeError(f"samples[{index}] must be a dict, got {type(sample).__name__}")
    for key in ("query", "positive"):
        if key not in sample:
            raise ValueError(f"samples[{index}] has no '{key}' key (found keys {sorted(sample)})")
    has_negative, has_documents = "negative" in sample, "documents" in sample
    if has_negative == has_documents:
        raise ValueError(
            f"samples[{index}] must have exactly one of 'negative' and 'documents', found "
            + ("both" if has_negative else "neither")
        )
    query = sample["query"]
    if not isinstance(query, str):
        raise TypeError(f"samples[{index}]['query'] must be a string, got {type(query).__name__}")
    positives = _positive_gains(sample["positive"], index)

    if has_negative:
        negatives = _text_list(sample["negative"], "negative", index)
        docs = [*positives, *negatives]
        gains = np.array([*positives.values(), *([0.0] * len(negatives))])
        return _RerankQuery(query, docs, gains, np.zeros(0), None, len(positives), len(negatives))

    documents = _text_list(sample["documents"], "documents", index)
    if not documents:
        raise ValueError(f"samples[{index}]['documents'] is empty: give the first-stage candidates")
    retrieved_gains = np.array([positives.get(doc, 0.0) for doc in documents])
    present = set(documents)
    missed = np.array([gain for doc, gain in positives.items() if doc not in present])

    if always_rerank_positives:
        # Every positive is reranked; as in sentence-transformers, the base order gets the missed
        # positives appended after the candidates, and scores 0 when it retrieved none of them.
        rest = [doc for doc in documents if doc not in positives]
        docs = [*positives, *rest]
        gains = np.array([*positives.values(), *([0.0] * len(rest))])
        if retrieved_gains.sum() == 0:
            base = (0.0, 0.0, 0.0)
        else:
            base_gains = np.concatenate([retrieved_gains, missed])
            base = ranking_metrics(base_gains, _input_order(len(base_gains)), at_k)
        return _RerankQuery(query, docs, gains, np.zeros(0), base, len(positives), len(rest))

    # Realistic: rerank only what the first stage found; the missed positives count against both orders.
    base = ranking_metrics(retrieved_gains, _input_order(len(documents)), at_k, missed_gains=missed)
    docs = documents if retrieved_gains.sum() > 0 else []
    num_negatives = int(np.sum(retrieved_gains == 0))
    return _RerankQuery(query, docs, retrieved_gains, missed, base, len(positives), num_negatives)


class CrossEncoderRerankingEvaluator(CrossEncoderEvaluator):
    """Reranking quality: the model scores each query's candidates, which are ranked by score.

    Each sample is ``{"query": str, "positive": ..., "negative": [str]}`` or
    ``{"query": str, "positive": ..., "documents": [str]}`` where ``positive`` is a string, a list of
    strings, or (graded relevance, beyond sentence-transformers) a ``{document: gain}`` dict; NDCG uses
    the gains, MAP and MRR count every gain > 0 as relevant. ``documents`` is a first-stage ranking
    (best first): the evaluator then also reports the metrics of that input order (``base_*``).

    Metrics: ``map`` (full list), ``mrr@{at_k}``, ``ndcg@{at_k}`` (primary), plus ``base_map``,
    ``base_mrr@{at_k}``, ``base_ndcg@{at_k}`` with ``documents``. Keys ``f"{name}_{metric}"``; CSV file
    ``CrossEncoderRerankingEvaluator_{name}_results_@{at_k}.csv``. Tied scores count as their expected
    value over random orders of the tied candidates (see :mod:`raycross.evaluation.metrics`).
    All pairs of all queries are scored in one batched call.

    ``always_rerank_positives`` (``documents`` only): True adds every positive to the reranked list, so
    the maximum is 1.0 (as in sentence-transformers; the base order gets missed positives appended at
    its end and scores 0 for a query where it found none). False is the realistic mode: only the
    candidates are reranked and the positives the first stage missed count as misses in both the base
    and the reranked metrics (AP's denominator, NDCG's ideal DCG), so both are bounded by its recall.

    Args:
        samples: list (or dict of) samples as above.
        at_k: cutoff of MRR and NDCG.
        always_rerank_positives: see above.
        name, batch_size, show_progress_bar, write_csv, scorer, prompt_name, prompt: as in every
            raycross evaluator.
        mrr_at_k: deprecated alias of `at_k`.

    Example:
        >>> evaluator = CrossEncoderRerankingEvaluator(
        ...     [{"query": "capital of France", "positive": ["Paris is the capital of France."],
        ...       "documents": ["Lyon is in France.", "Paris is the capital of France."]}], name="dev")
        >>> evaluator.primary_metric
        'dev_ndcg@10'
        >>> results = evaluator(model)  # doctest: +SKIP
        >>> # {"dev_map": ..., "dev_base_ndcg@10": ..., ...}
    """

    def __init__(
        self,
        samples: Sequence[Mapping[str, Any]] | Mapping[Any, Mapping[str, Any]],
        at_k: int = 10,
        always_rerank_positives: bool = True,
        name: str = "",
        batch_size: int = 64,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        scorer: PairScorer | str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        mrr_at_k: int | None = None,
    ) -> None:
        super().__init__(name, batch_size, show_progress_bar, write_csv, scorer, prompt_name, prompt)
        if mrr_at_k is not None:
            logger.warning("The `mrr_at_k` parameter is deprecated; use `at_k=%s` instead.", mrr_at_k)
            at_k = mrr_at_k
        if isinstance(at_k, bool) or not isinstance(at_k, int) or at_k < 1:
            raise ValueError(f"`at_k` must be an integer >= 1, got {at_k!r}")
        if isinstance(samples, Mapping):
            samples = list(samples.values())
        if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
            raise TypeError(f"`samples` must be a list of dicts, got {type(samples).__name__}")
        if len(samples) == 0:
            raise ValueError("`samples` is empty: nothing to evaluate")
        self.samples = samples
        self.at_k = at_k
        self.always_rerank_positives = always_rerank_positives
        self.queries = [build_rerank_query(s, i, at_k, always_rerank_positives) for i, s in enumerate(samples)]
        # Base metrics average over the `documents` samples (all of them, unless the forms are mixed).
        self.has_base = any(q.base is not None for q in self.queries)
        self.csv_file = "CrossEncoderRerankingEvaluator" + (f"_{name}" if name else "") + f"_results_@{at_k}.csv"
        self.csv_headers = ["epoch", "steps", "MAP", f"MRR@{at_k}", f"NDCG@{at_k}"]
        self.primary_metric = self._prefixed(f"ndcg@{at_k}")

    def pairs(self) -> list[tuple[str, str]]:
        return [(q.query, doc) for q in self.queries for doc in q.docs]

    def num_pairs(self) -> int:
        return sum(len(q.docs) for q in self.queries)

    def _compute(self, scores: np.ndarray) -> tuple[dict[str, Any], list[Any]]:
        scores = one_score_per_pair(check_scores(scores, self.num_pairs()), type(self).__name__)
        per_query = np.zeros((len(self.queries), 3))
        offset = 0
        for row, q in enumerate(self.queries):
            if q.docs:
                query_scores = scores[offset : offset + len(q.docs)]
                offset += len(q.docs)
                per_query[row] = ranking_metrics(q.gains, query_scores, self.at_k, missed_gains=q.missed_gains)
        mean_map, mean_mrr, mean_ndcg = per_query.mean(axis=0)
        k = self.at_k
        metrics = {"map": mean_map, f"mrr@{k}": mean_mrr, f"ndcg@{k}": mean_ndcg}
        self._log_statistics()
        if self.has_base:
            base_map, base_mrr, base_ndcg = np.mean([q.base for q in self.queries if q.base is not None], axis=0)
            metrics.update({"base_map": base_map, f"base_mrr@{k}": base_mrr, f"base_ndcg@{k}": base_ndcg})
            pad = " " * len(str(k))
            logger.info("%s       Base  -> Reranked", pad)
            logger.info("MAP:%s   %.2f -> %.2f", pad, base_map * 100, mean_map * 100)
            logger.info("MRR@%d:  %.2f -> %.2f", k, base_mrr * 100, mean_mrr * 100)
            logger.info("NDCG@%d: %.2f -> %.2f", k, base_ndcg * 100, mean_ndcg * 100)
        else:
            pad = " " * len(str(k))
            logger.info("MAP:%s   %.2f", pad, mean_map * 100)
            logger.info("MRR@%d:  %.2f", k, mean_mrr * 100)
            logger.info("NDCG@%d: %.2f", k, mean_ndcg * 100)
        return metrics, [mean_map, mean_mrr, mean_ndcg]

    def _model_card_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        if not self.has_base:
            return metrics
        keys = ["map", f"mrr@{self.at_k}", f"ndcg@{self.at_k}"]
        return {key: f"{metrics[key]:.4f} ({metrics[key] - metrics['base_' + key]:+.4f})" for key in keys}

    def _log_statistics(self) -> None:
        positives = [q.num_positives for q in self.queries]
        negatives = [q.num_negatives for q in self.queries]
        logger.info(
            "Queries: %d\tPositives: Min %.1f, Mean %.1f, Max %.1f\tNegatives: Min %.1f, Mean %.1f, Max %.1f",
            len(self.queries), min(positives), np.mean(positives), max(positives),
            min(negatives), np.mean(negatives), max(negatives),
        )

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"at_k": self.at_k}
        if self.has_base:
            config["always_rerank_positives"] = self.always_rerank_positives
        return config
