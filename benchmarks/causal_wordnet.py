"""A small causal-LM reranker with a real vocabulary, fine-tuned on WordNet context->gloss pairs.

No model hub here: the model is a Qwen3 decoder (``--layers`` layers, ``--hidden`` wide) with a byte-level
BPE vocabulary trained on the WordNet text (definitions and training queries, tests/conftest.py's
``train_bpe_tokenizer``), randomly initialised, then fine-tuned as a yes/no reranker with raycross. The
evaluation reranks every sense definition of the query word (``candidates.parquet``) and reports MAP /
MRR@10 / NDCG@10 of the untrained and the trained model (plus the candidate order as a baseline).

Run:
    python benchmarks/causal_wordnet.py --steps 600 --output /tmp/causal-wordnet > /tmp/causal_wordnet.log 2>&1

``build_wordnet_causal_model`` is shared with ``benchmarks/bench_causal.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("RAYCROSS_SHARED_DATA", REPO.parent / "shared" / "data")) / "wordnet-context2gloss"


def build_wordnet_causal_model(path: Path, vocab_size: int = 8000, hidden: int = 128, layers: int = 4,
                               max_length: int = 256, seed: int = 0) -> Path:
    """A random Qwen3ForCausalLM with a BPE vocabulary trained on the WordNet text, saved in `path`."""
    from tests.conftest import make_tiny_causal_model, train_bpe_tokenizer

    if (path / "config.json").is_file():
        return path
    texts = pq.read_table(DATA / "corpus.parquet", columns=["text"]).column("text").to_pylist()
    texts += sorted(set(pq.read_table(DATA / "train-pairs.parquet", columns=["query"]).column("query").to_pylist()))
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size, model_max_length=max_length)
    return make_tiny_causal_model(path, arch="qwen3", seed=seed, hidden_size=hidden, num_layers=layers,
                                  max_position_embeddings=max_length, tokenizer=tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--eval-queries", type=int, default=1000)
    parser.add_argument("--output", default="/tmp/causal-wordnet")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    cli = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(cli.threads)

    from benchmarks.train_wordnet import rerank_samples
    from raycross import CrossEncoder
    from raycross.evaluation import CrossEncoderRerankingEvaluator
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    output = Path(cli.output)
    started = time.perf_counter()
    base = build_wordnet_causal_model(output / "base", cli.vocab_size, cli.hidden, cli.layers)
    print(f"built {base} in {time.perf_counter() - started:.0f} s", flush=True)
    samples = rerank_samples(DATA, limit=cli.eval_queries)
    evaluator = CrossEncoderRerankingEvaluator(samples, name="wordnet", batch_size=64)
    model = CrossEncoder(str(base), device="cpu")
    print(model, f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)
    untrained = evaluator(model)
    print("untrained", json.dumps(untrained), flush=True)

    table = pq.read_table(DATA / "train-pairs.parquet")
    rows = table.slice(0, min(table.num_rows, cli.steps * cli.batch_size * 2)).to_pydict()
    args = CrossEncoderTrainingArguments(
        str(output / "run"), max_steps=cli.steps, per_device_train_batch_size=cli.batch_size, learning_rate=cli.lr,
        warmup_ratio=0.05, save_strategy="no", logging_steps=50, disable_tqdm=True, seed=1,
    )
    started = time.perf_counter()
    CrossEncoderTrainer(model, args, train_dataset=rows, loss=BinaryCrossEntropyLoss(model)).train()
    seconds = time.perf_counter() - started
    trained = evaluator(model)
    model.save_pretrained(output / "final")
    report = {"model": f"Qwen3 {cli.layers} layers, hidden {cli.hidden}, BPE vocab {len(model.tokenizer)}",
              "steps": cli.steps, "batch_size": cli.batch_size, "lr": cli.lr, "torch_threads": cli.threads, "train_seconds": round(seconds, 1),
              "eval_queries": len(samples), "untrained": untrained, "trained": trained,
              "load_average": os.getloadavg()}
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
