"""Rebuild the bundled WordNet context-to-definition subset from ../shared/data (run from the repo root).

    python raycross/resources/wordnet-mini/build.py ../shared/data/wordnet-context2gloss
"""

import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED, N_TRAIN_QUERIES, N_EVAL_QUERIES, CORPUS_SIZE = 12, 3000, 300, 20000


def main(src: Path, dst: Path) -> None:
    rng = random.Random(SEED)
    pairs = pq.read_table(src / "train-pairs.parquet").to_pylist()
    by_query: dict[str, list[dict]] = {}
    for row in pairs:
        by_query.setdefault(row["query"], []).append(row)
    queries = sorted(q for q, rows in by_query.items() if any(r["label"] == 1 for r in rows))
    train_queries = rng.sample(queries, N_TRAIN_QUERIES)
    train = [{"query": q, "positive": next(r["passage"] for r in by_query[q] if r["label"] == 1)} for q in train_queries]

    corpus = {row["_id"]: row["text"] for row in pq.read_table(src / "corpus.parquet").to_pylist()}
    eval_queries = {row["_id"]: row["text"] for row in pq.read_table(src / "queries.parquet").to_pylist()}
    qrels = {row["query-id"]: row["corpus-id"] for row in pq.read_table(src / "qrels.parquet").to_pylist()}
    candidates = {row["query-id"]: row["candidates"] for row in pq.read_table(src / "candidates.parquet").to_pylist()}
    eval_ids = rng.sample(sorted(eval_queries, key=int), N_EVAL_QUERIES)
    evaluation = [
        {"query": eval_queries[qid], "positive": [corpus[qrels[qid]]], "documents": [corpus[c] for c in candidates[qid]]}
        for qid in eval_ids
    ]

    texts = {r["passage"] for q in train_queries for r in by_query[q]}
    texts |= {d for row in evaluation for d in row["documents"]}
    others = sorted(set(corpus.values()) - texts)
    texts |= set(rng.sample(others, max(0, CORPUS_SIZE - len(texts))))
    mining_corpus = sorted(texts)

    dst.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(train), dst / "train.parquet", compression="zstd")
    pq.write_table(pa.Table.from_pylist(evaluation), dst / "eval.parquet", compression="zstd")
    pq.write_table(pa.table({"text": mining_corpus}), dst / "corpus.parquet", compression="zstd")
    print(f"train {len(train)} eval {len(evaluation)} corpus {len(mining_corpus)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent)
