"""Reranking evaluation time, raycross vs sentence-transformers, on WordNet candidates with the same model.

    python -m benchmarks.bench_evaluation --queries 500 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import SHARED_DATA, alternate, machine_report, median  # noqa: E402


def wordnet_samples(n: int) -> list[dict]:
    """The first `n` WordNet evaluation queries with their candidate definitions as `documents`."""
    root = SHARED_DATA / "wordnet-context2gloss"
    corpus = dict(zip(*pq.read_table(root / "corpus.parquet").to_pydict().values()))
    queries = dict(zip(*pq.read_table(root / "queries.parquet").to_pydict().values()))
    qrels = pq.read_table(root / "qrels.parquet").to_pydict()
    positive = dict(zip(qrels["query-id"], qrels["corpus-id"]))
    candidates = pq.read_table(root / "candidates.parquet").slice(0, n).to_pylist()
    return [
        {"query": queries[c["query-id"]], "positive": [corpus[positive[c["query-id"]]]],
         "documents": [corpus[d] for d in c["candidates"]]}
        for c in candidates
    ]


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator as STEvaluator

    from raycross import CrossEncoder
    from raycross.evaluation import CrossEncoderRerankingEvaluator
    from raycross.resources import minilm_path

    model_path = args.model or str(minilm_path())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ours = CrossEncoder(model_path, device=device)
    theirs = STCrossEncoder(model_path, device=device)
    theirs.model.load_state_dict(ours.hf_model.state_dict())
    # sentence-transformers' evaluator fails on a query with a single distinct candidate (scikit-learn's NDCG
    # needs two documents): both sides get the queries with two distinct definitions or more
    samples = [s for s in wordnet_samples(args.queries) if len(set(s["documents"]) | set(s["positive"])) >= 2]
    n_pairs = sum(len(s["documents"]) for s in samples)
    our_eval = CrossEncoderRerankingEvaluator(samples, at_k=10, name="wn", batch_size=args.batch_size, write_csv=False)
    their_eval = STEvaluator(samples, at_k=10, name="wn", batch_size=args.batch_size, write_csv=False)
    ours_metrics, theirs_metrics = our_eval(ours), their_eval(theirs)
    times = alternate({"raycross": lambda: our_eval(ours), "sentence-transformers": lambda: their_eval(theirs)},
                      repeats=args.repeats)
    print(machine_report())
    print(f"model {model_path}, {len(samples)} WordNet queries, {n_pairs} pairs, batch {args.batch_size}, {device}")
    for key in ("wn_map", "wn_mrr@10", "wn_ndcg@10"):
        print(f"  {key:<12} raycross {ours_metrics[key]:.4f}   sentence-transformers {theirs_metrics[key]:.4f}")
    result = {name: median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:>22}: {result[name]:7.2f} s (median of {len(values)}: {[round(v, 2) for v in values]})")
    ratio = result["sentence-transformers"] / result["raycross"]
    print(f"speed ratio raycross / sentence-transformers: {ratio:.2f}x")
    print("RESULT " + json.dumps({**result, "ratio": ratio}), flush=True)
    return {**result, "ratio": ratio}


if __name__ == "__main__":
    main()
