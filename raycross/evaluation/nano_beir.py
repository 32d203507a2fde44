"""CrossEncoderNanoBEIREvaluator: rerank the BM25 top-k of the NanoBEIR data sets, per data set and aggregated."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from raycross.evaluation.base import CrossEncoderEvaluator, Pair, PairScorer
from raycross.evaluation.nanobeir_data import (
    DATASET_NAME_TO_HUMAN_READABLE,
    human_readable_name,
    load_nanobeir,
    rerank_samples,
)
from raycross.evaluation.reranking import CrossEncoderRerankingEvaluator
from raycross.evaluation.sequential import split_scores

logger = logging.getLogger(__name__)

DEFAULT_DATASET_ID = "sentence-transformers/NanoBEIR-en"


class CrossEncoderNanoBEIREvaluator(CrossEncoderEvaluator):
    """Reranking quality on NanoBEIR: each data set's BM25 top `rerank_k` is reranked by the model.

    Per data set the keys are ``Nano{Name}_R{rerank_k}_{metric}`` (e.g. ``NanoMSMARCO_R100_ndcg@10``),
    with the metrics of :class:`CrossEncoderRerankingEvaluator` (``map``, ``mrr@{at_k}``,
    ``ndcg@{at_k}`` and their ``base_`` BM25 counterparts); the aggregate over data sets is
    ``NanoBEIR_R{rerank_k}_{aggregate_key}_{metric}``, primary ``NanoBEIR_R{rerank_k}_mean_ndcg@{at_k}``.
    All pairs of all data sets are scored in one batched pass.

    Args:
        dataset_names: short names (``"msmarco"``, ``"nq"``, ...); None = all but arguana and touche2020.
        dataset_id: a hub dataset id (default ``sentence-transformers/NanoBEIR-en``), a local directory in
            the same layout, or a per-data-set template such as ``"sentence-transformers/Nano{name}-bm25"``
            (see :mod:`raycross.evaluation.nanobeir_data`).
        rerank_k: number of BM25 candidates reranked per query.
        at_k: cutoff of MRR and NDCG.
        always_rerank_positives: True adds every positive to the reranked list (max 1.0); False is the
            realistic mode where positives that BM25 missed count as misses.
        graded: use the qrels ``score`` column as NDCG gains (beyond sentence-transformers).
        batch_size, show_progress_bar, write_csv, scorer, prompt_name, prompt: as in every
            raycross evaluator.
        aggregate_fn: list of per-data-set values -> one value (default ``np.mean``).
        aggregate_key: name of the aggregate in the keys (default ``"mean"``).

    Example:
        >>> evaluator = CrossEncoderNanoBEIREvaluator(["msmarco", "nq"])  # doctest: +SKIP
        >>> results = evaluator(model)  # doctest: +SKIP
        >>> evaluator.primary_metric  # doctest: +SKIP
        'NanoBEIR_R100_mean_ndcg@10'
    """

    def __init__(
        self,
        dataset_names: Sequence[str] | None = None,
        dataset_id: str = DEFAULT_DATASET_ID,
        rerank_k: int = 100,
        at_k: int = 10,
        always_rerank_positives: bool = True,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        scorer: PairScorer | str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        aggregate_fn: Callable[[list[float]], float] = np.mean,
        aggregate_key: str = "mean",
        graded: bool = False,
    ) -> None:
        if isinstance(rerank_k, bool) or not isinstance(rerank_k, int) or rerank_k < 1:
            raise ValueError(f"`rerank_k` must be an integer >= 1, got {rerank_k!r}")
        super().__init__(f"NanoBEIR_R{rerank_k:d}_{aggregate_key}", batch_size, show_progress_bar, write_csv, scorer, prompt_name, prompt)
        if dataset_names is None:
            # As in sentence-transformers: argument retrieval (arguana, touche2020) is a different task.
            dataset_names = [n for n in DATASET_NAME_TO_HUMAN_READABLE if n not in ("arguana", "touche2020")]
        if isinstance(dataset_names, str):
            raise TypeError("`dataset_names` must be a list of names, e.g. ['msmarco'], got a string")
        if len(dataset_names) == 0:
            raise ValueError("`dataset_names` cannot be empty; use None to evaluate on all data sets")
        known = DATASET_NAME_TO_HUMAN_READABLE
        invalid = [n for n in dataset_names if not isinstance(n, str) or n.lower() not in known]
        if invalid:
            raise ValueError(
                f"Dataset(s) {invalid} are not valid NanoBEIR datasets. "
                f"Valid dataset names are: {list(DATASET_NAME_TO_HUMAN_READABLE)}"
            )
        self.dataset_names = list(dataset_names)
        self.dataset_id = str(dataset_id)
        self.rerank_k = rerank_k
        self.at_k = at_k
        self.always_rerank_positives = always_rerank_positives
        self.graded = graded
        self.aggregate_fn = aggregate_fn
        self.aggregate_key = aggregate_key
        self.evaluators = [
            self._load_dataset(name)
            for name in tqdm(self.dataset_names, desc="Loading NanoBEIR datasets", leave=False,
                             disable=not show_progress_bar)
        ]
        self.csv_file = f"NanoBEIR_evaluation_{aggregate_key}_results.csv"
        self.csv_headers = ["epoch", "steps", "MAP", f"MRR@{at_k}", f"NDCG@{at_k}"]
        self.primary_metric = self._prefixed(f"ndcg@{at_k}")

    def _get_human_readable_name(self, dataset_name: str) -> str:
        return f"Nano{human_readable_name(dataset_name)}_R{self.rerank_k}"

    def _load_dataset(self, dataset_name: str) -> CrossEncoderRerankingEvaluator:
        name = self._get_human_readable_name(dataset_name)
        data = load_nanobeir(self.dataset_id, dataset_name, graded=self.graded)
        return CrossEncoderRerankingEvaluator(
            samples=rerank_samples(data, self.rerank_k, name=name),
            at_k=self.at_k,
            always_rerank_positives=self.always_rerank_positives,
            name=name,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            write_csv=self.write_csv,
            prompt_name=self.prompt_name,
            prompt=self.prompt,
        )

    def pairs(self) -> list[Pair]:
        return [pair for evaluator in self.evaluators for pair in evaluator.pairs()]

    def num_pairs(self) -> int:
        return sum(evaluator.num_pairs() for evaluator in self.evaluators)

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
        per_dataset: dict[str, float] = {}
        per_metric: dict[str, list[float]] = {}
        for evaluator, part in zip(self.evaluators, split_scores(scores, sizes)):
            logger.info("Evaluating %s", evaluator.name)
            results = evaluator.compute_metrics(part, model=model, output_path=output_path, epoch=epoch, steps=steps)
            for key, value in results.items():
                metric = key[len(evaluator.name) + 1 :]
                per_dataset[key] = value
                per_metric.setdefault(metric, []).append(value)
        aggregated = {metric: float(self.aggregate_fn(values)) for metric, values in per_metric.items()}
        k = self.at_k
        if output_path is not None and self.write_csv:
            row = [aggregated["map"], aggregated[f"mrr@{k}"], aggregated[f"ndcg@{k}"]]
            self.write_csv_row(output_path, [epoch, steps, *row])
        logger.info("CrossEncoderNanoBEIREvaluator: Aggregated Results:")
        pad = " " * len(str(k))
        logger.info("%s       Base  -> Reranked", pad)
        for label, key in ((f"MAP:{pad}  ", "map"), (f"MRR@{k}:", f"mrr@{k}"), (f"NDCG@{k}:", f"ndcg@{k}")):
            logger.info("%s %.2f -> %.2f", label, aggregated["base_" + key] * 100, aggregated[key] * 100)
        if model is not None:
            card = {
                key: f"{aggregated[key]:.4f} ({aggregated[key] - aggregated['base_' + key]:+.4f})"
                for key in ("map", f"mrr@{k}", f"ndcg@{k}")
            }
            self.store_metrics_in_model_card_data(model, self.prefix_name_to_metrics(card, self.name), epoch, steps)
        per_dataset.update(self.prefix_name_to_metrics(aggregated, self.name))
        return per_dataset

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        logger.info("NanoBEIR Evaluation of the model on %s dataset:", self.dataset_names)
        return super().__call__(model, output_path=output_path, epoch=epoch, steps=steps)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "dataset_names": self.dataset_names,
            "dataset_id": self.dataset_id,
            "rerank_k": self.rerank_k,
            "at_k": self.at_k,
            "always_rerank_positives": self.always_rerank_positives,
        }
