"""Streaming training data: memory per worker on 1x vs 10x the rows, and the data pipeline's throughput.

1. ``generate``: parquet training data from the shared real text (WordNet context->gloss pairs and SNLI
   premise/hypothesis pairs, shuffled, repeated to the row count): pairs (query, passage, label) and lists
   (query, [8 passages], [8 labels]). Written to /tmp, never to the repo.
2. ``memory``: Ray Train training (2 workers, a tiny BERT on the MiniLM vocabulary, so the data path
   dominates) on a parquet file for ``--max-steps`` steps (many shuffle windows); reports the peak RSS
   (VmHWM) of every training worker and of the driver. Run on 1x and 10x the rows, streamed and in memory.
   ``fullpass``: one whole epoch of the streamed data path (no tokenization) in one process: peak RSS
   after every row of 1x and of 10x was read.
3. ``pipeline``: the per-worker data pipeline alone (parquet blocks -> shuffle window -> batch sampler ->
   texts -> MiniLM tokenization in the prefetch thread), the model step replaced by nothing, pinned to
   one core: samples/s for pairs and for lists.

Run everything (about 10 minutes on 2 quiet cores):
    python benchmarks/bench_streaming.py all --rows 120000 --out /tmp/raycross-streaming
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import SHARED_DATA, machine_report  # noqa: E402


# ----------------------------------------------------------------------------- data
def real_pairs():
    """(query, passage, label) from WordNet training pairs and SNLI (entailment = 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wordnet = pq.read_table(SHARED_DATA / "wordnet-context2gloss" / "train-pairs.parquet")
    snli = pq.read_table(SHARED_DATA / "snli" / "train.parquet")
    snli = pa.table({"query": snli["premise"], "passage": snli["hypothesis"],
                     "label": pc.cast(pc.equal(snli["label"], "entailment"), pa.int64())})
    return pa.concat_tables([wordnet.cast(snli.schema), snli])


def generate(rows: int, out: Path, seed: int = 0) -> dict[str, str]:
    """Write ``pairs-<rows>.parquet`` and ``lists-<rows // 8>.parquet`` (row groups of 16,384 rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    pairs_path, lists_path = out / f"pairs-{rows}.parquet", out / f"lists-{rows // 8}.parquet"
    if pairs_path.exists() and lists_path.exists():
        return {"pairs": str(pairs_path), "lists": str(lists_path)}
    source = real_pairs().combine_chunks()
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(source.num_rows) for _ in range(-(-rows // source.num_rows))])[:rows]
    with pq.ParquetWriter(pairs_path, source.schema) as writer:
        for start in range(0, rows, 65536):
            writer.write_table(source.take(pa.array(idx[start:start + 65536])), row_group_size=16384)
    n_lists = rows // 8
    lists = pa.table({
        "query": source["query"].take(pa.array(idx[:n_lists])),
        "passages": pa.ListArray.from_arrays(pa.array(np.arange(0, 8 * n_lists + 1, 8, dtype=np.int32)),
                                             source["passage"].chunk(0).take(pa.array(rng.integers(0, source.num_rows, 8 * n_lists)))),
        "labels": pa.ListArray.from_arrays(pa.array(np.arange(0, 8 * n_lists + 1, 8, dtype=np.int32)),
                                           pa.array(np.tile([1.0] + [0.0] * 7, n_lists))),
    })
    pq.write_table(lists, lists_path, row_group_size=4096)
    return {"pairs": str(pairs_path), "lists": str(lists_path)}


def tiny_model(path: Path) -> str:
    """A 1-layer BERT (hidden 32) with the real MiniLM vocabulary and tokenizer: a cheap model step."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from raycross.resources import minilm_path

    if (path / "config.json").exists():
        return str(path)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1, max_position_embeddings=512)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- memory
def memory(data: str, out: Path, streaming: bool, workers: int, batch_size: int, window: int, max_steps: int) -> dict:
    """`max_steps` steps on Ray Train (many windows); every worker reports its peak RSS at the end."""
    from transformers import TrainerCallback

    from raycross import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from raycross.losses import BinaryCrossEntropyLoss

    report = out / f"rss-{Path(data).stem}-{'stream' if streaming else 'memory'}"
    report.mkdir(parents=True, exist_ok=True)

    class PeakRss(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            import torch.distributed as dist

            rank = dist.get_rank() if dist.is_initialized() else 0
            (report / f"rank{rank}.json").write_text(json.dumps({"peak_rss_mb": peak_rss_mb(), "steps": state.global_step}))

    model = CrossEncoder(tiny_model(out / "tiny-bert"), device="cpu")
    args = CrossEncoderTrainingArguments(
        str(report / "run"), max_steps=max_steps, per_device_train_batch_size=batch_size, learning_rate=1e-4,
        num_workers=workers, resources_per_worker={"CPU": 0.5}, streaming=streaming, streaming_window=window,
        save_strategy="no", report_to=[], logging_steps=10**9, seed=1, disable_tqdm=True,
    )
    started = time.perf_counter()
    result = CrossEncoderTrainer(model, args, train_dataset=data, loss=BinaryCrossEntropyLoss(model),
                                 callbacks=[PeakRss()]).train()
    seconds = time.perf_counter() - started
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in range(workers)]
    return {"data": Path(data).name, "streaming": streaming, "window": window, "steps": result.global_step, "seconds": round(seconds, 1),
            "worker_peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in ranks], "driver_peak_rss_mb": round(peak_rss_mb(), 1)}


# ----------------------------------------------------------------------------- pipeline
def pipeline(data: str, kind: str, batch_size: int, window: int, seconds: float) -> dict:
    """Blocks -> window -> sampler -> texts -> the loss's plan tokenized (prefetch thread), no model step, one core."""
    import torch

    from raycross import CrossEncoder
    from raycross.data.blocks import ParquetBlocks
    from raycross.losses import BinaryCrossEntropyLoss, ListNetLoss
    from raycross.resources import minilm_path
    from raycross.training.batches import Batch, BatchStream
    from raycross.training.streaming import WindowedBatches

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    model = CrossEncoder(str(minilm_path()), device="cpu", max_length=256)
    columns = ["query", "passage", "label"] if kind == "pairs" else ["query", "passages", "labels"]
    loss = BinaryCrossEntropyLoss(model) if kind == "pairs" else ListNetLoss(model)
    blocks = ParquetBlocks([data], block_rows=min(8192, window // 4), seed=0, columns=columns)
    stream = WindowedBatches(blocks, columns[:2], columns[2], "batch_sampler", batch_size, seed=0, window_rows=window)
    steps = 10**6
    batches = stream.epoch(0, num_batches=steps)

    def make_batch(step: int) -> Batch:
        inputs, labels, rows = next(batches)
        return Batch("train", inputs, labels, rows)

    samples = pairs = 0
    started = time.perf_counter()
    for batch in BatchStream(range(steps), make_batch, model, {"train": loss}, prefetch=2):
        assert batch.plan is not None  # texts gathered and tokenized (the loss's plan) in the prefetch thread
        samples += batch.num_rows
        pairs += sum(len(d) for d in batch.inputs[1]) if kind == "lists" else batch.num_rows
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    return {"data": Path(data).name, "kind": kind, "batch_size": batch_size, "samples_per_s": round(samples / elapsed),
            "pairs_per_s": round(pairs / elapsed), "samples": samples, "seconds": round(elapsed, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def fullpass(data: str, kind: str, batch_size: int, window: int) -> dict:
    """A whole epoch of the streamed data path without tokenization (blocks -> window -> sampler -> texts):
    peak RSS after reading every row, and rows/s."""
    from raycross.data.blocks import ParquetBlocks
    from raycross.training.streaming import WindowedBatches, nominal_batches

    columns = ["query", "passage", "label"] if kind == "pairs" else ["query", "passages", "labels"]
    blocks = ParquetBlocks([data], block_rows=min(8192, window // 4), seed=0, columns=columns)
    stream = WindowedBatches(blocks, columns[:2], columns[2], "batch_sampler", batch_size, seed=0, window_rows=window)
    before = peak_rss_mb()
    started = time.perf_counter()
    rows = sum(n for _, _, n in stream.epoch(0, nominal_batches("batch_sampler", blocks.num_rows, batch_size, False)))
    elapsed = time.perf_counter() - started
    return {"data": Path(data).name, "rows": rows, "all_rows": rows == blocks.num_rows, "window": window,
            "rows_per_s": round(rows / elapsed), "peak_rss_mb_before": round(before, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "peak_window_rows": stream.peak_window_rows}


# ----------------------------------------------------------------------------- orchestration
def _subprocess(argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.run([sys.executable, __file__, *argv], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["generate", "memory", "pipeline", "fullpass", "all"])
    parser.add_argument("--rows", type=int, default=120_000, help="rows of the 1x pair data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/raycross-streaming"))
    parser.add_argument("--data", help="parquet file (memory / pipeline)")
    parser.add_argument("--streaming", choices=["true", "false"], default="true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--max-steps", type=int, default=300, help="training steps of the memory runs")
    parser.add_argument("--kind", choices=["pairs", "lists"], default="pairs")
    parser.add_argument("--seconds", type=float, default=30.0, help="pipeline measuring time")
    parser.add_argument("--in-memory-10x", action="store_true", help="also run the 10x data held in memory")
    a = parser.parse_args(argv)
    if a.command == "generate":
        print(json.dumps(generate(a.rows, a.out)))
    elif a.command == "memory":
        print(json.dumps(memory(a.data, a.out, a.streaming == "true", a.workers, a.batch_size, a.window, a.max_steps)))
    elif a.command == "fullpass":
        print(json.dumps(fullpass(a.data, a.kind, a.batch_size, a.window)))
    elif a.command == "pipeline":
        print(json.dumps(pipeline(a.data, a.kind, a.batch_size, a.window, a.seconds)))
    else:
        print(machine_report())
        small, big = generate(a.rows, a.out), generate(10 * a.rows, a.out)
        results = {"pipeline": [], "fullpass": [], "memory": []}
        for files in (small, big):  # alternating sizes: the load changes during the run
            r = _subprocess(["fullpass", "--data", files["pairs"], "--window", str(a.window)])
            results["fullpass"].append(r)
            print(json.dumps(r), flush=True)
        for kind, batch in (("pairs", 32), ("lists", 8)):
            r = _subprocess(["pipeline", "--data", big[kind], "--kind", kind, "--batch-size", str(batch),
                             "--seconds", str(a.seconds)])
            results["pipeline"].append(r)
            print(json.dumps(r), flush=True)
        runs = [(small, "true"), (big, "true"), (small, "false")] + ([(big, "false")] if a.in_memory_10x else [])
        for files, streaming in runs:
            r = _subprocess(["memory", "--data", files["pairs"], "--out", str(a.out), "--streaming", streaming,
                             "--workers", str(a.workers), "--batch-size", str(a.batch_size), "--window", str(a.window),
                             "--max-steps", str(a.max_steps)])
            r["load_avg_1m"] = round(os.getloadavg()[0], 2)
            results["memory"].append(r)
            print(json.dumps(r), flush=True)
        (a.out / "bench_streaming.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
