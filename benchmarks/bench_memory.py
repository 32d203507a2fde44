"""Peak memory per worker and training throughput: DDP vs FSDP2 vs LoRA (and FSDP + LoRA) on the same model.

Each strategy runs in fresh worker processes (torch.multiprocessing, a gloo process group on CPU, NCCL on
GPU) doing what a raycross Ray Train worker does per step: the CrossEncoder loaded in full (as the
driver ships it), wrapped the way the training loop wraps it (DDP, ``raycross.training.fsdp.shard_model``,
a LoRA adapter from ``CrossEncoder.add_adapter``), BinaryCrossEntropyLoss, raycross's AdamW, gradient
clipping, optimizer step. The model is a BERT of the chosen size with random weights built here (the
MiniLM tokenizer), so nothing is downloaded.

Reported per worker: CPU, the peak resident memory (RSS) during the training steps and over the whole
process (the latter includes loading the full model before sharding); GPU, ``max_memory_allocated``.
Throughput: samples/s over all workers after the warm-up steps.

Example:
    python -m benchmarks.bench_memory --hidden 768 --layers 12 --workers 2 --steps 8 --skip 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import threading
import time
import traceback
from pathlib import Path

STRATEGIES = ("ddp", "fsdp", "lora", "fsdp+lora")
LORA = {"r": 16, "lora_alpha": 32, "target_modules": ["query", "key", "value", "dense"]}


def rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Samples this process's RSS every 20 ms in a thread; ``peak`` is the highest value since ``reset``."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = rss_mib()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_mib())


def build_model(path: Path, hidden: int, layers: int) -> int:
    """A random BERT sequence classifier of the given size with the MiniLM tokenizer; returns #parameters."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from raycross.resources import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden, num_labels=1)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def make_batches(steps: int, batch_size: int, words: int, seed: int) -> list[tuple[list[str], list[str], list[float]]]:
    from raycross.resources import minilm_path
    from transformers import AutoTokenizer

    vocab = [w for w in AutoTokenizer.from_pretrained(minilm_path()).get_vocab() if w.isalpha() and len(w) > 3]
    rng = random.Random(seed)
    batches = []
    for _ in range(steps):
        queries = [" ".join(rng.choices(vocab, k=words // 4)) for _ in range(batch_size)]
        docs = [" ".join(rng.choices(vocab, k=words)) for _ in range(batch_size)]
        batches.append((queries, docs, [float(rng.random() < 0.5) for _ in range(batch_size)]))
    return batches


def worker(rank: int, world: int, init_file: str, model_dir: str, strategy: str, opts: dict, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(opts["threads"])
    cuda = torch.cuda.is_available() and not opts["cpu"]
    device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from raycross import CrossEncoder
        from raycross.losses import BinaryCrossEntropyLoss
        from raycross.training import fsdp
        from raycross.training.optim import create_optimizer

        monitor = PeakRSS()
        baseline = rss_mib()
        model = CrossEncoder(model_dir, device=str(device), max_length=opts["max_length"])
        if "lora" in strategy:
            model.add_adapter(LORA)
        if strategy.startswith("fsdp"):
            fsdp.shard_model(model, device, bf16=opts["bf16"])
        else:
            model.to(device)
            model.wrap_for_training("ddp")
        model.train()
        loss_fn = BinaryCrossEntropyLoss(model)
        optimizer = create_optimizer(model.hf_model, lr=1e-5, weight_decay=0.01)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        trainable = sum(p.numel() for p in model.hf_model.parameters() if p.requires_grad)
        batches = make_batches(opts["steps"], opts["batch_size"], opts["words"], seed=rank)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        monitor.reset()
        started = None
        for step, (queries, docs, labels) in enumerate(batches):
            if step == opts["skip"]:
                dist.barrier()
                started = time.perf_counter()
            autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts["bf16"])
            with autocast:
                loss = loss_fn([queries, docs], torch.tensor(labels))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        dist.barrier()
        elapsed = time.perf_counter() - started
        train_peak = monitor.stop()
        result = {
            "rank": rank, "strategy": strategy, "trainable_params": trainable,
            "rss_baseline_mib": round(baseline, 1), "rss_train_peak_mib": round(train_peak, 1),
            "rss_process_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "samples_per_s": round((opts["steps"] - opts["skip"]) * opts["batch_size"] * world / elapsed, 3),
            "final_loss": float(loss.detach().float()),
        }
        if cuda:
            result["gpu_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        with open(Path(out) / f"{strategy}-{rank}.json", "w", encoding="utf8") as f:
            json.dump(result, f)
        dist.barrier()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)  # no destroy_process_group(): gloo's teardown can hang once the other rank has exited


def run_strategy(strategy: str, model_dir: Path, opts: dict, workers: int) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        init_file = Path(out) / "pg-init"
        mp.spawn(worker, args=(workers, str(init_file), str(model_dir), strategy, opts, out), nprocs=workers,
                 join=True)
        return [json.loads((Path(out) / f"{strategy}-{r}.json").read_text()) for r in range(workers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps excluded from the throughput")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--words", type=int, default=60, help="words per document (pairs near --max-length)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast / FSDP mixed-precision policy")
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even with GPUs")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds over the strategies")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args()
    # big allocations go straight to mmap and back to the OS when freed: RSS then shows what is in use
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from benchmarks.common import machine_report

    print(machine_report())
    opts = {k: getattr(args, k) for k in ("steps", "skip", "batch_size", "words", "max_length", "threads", "bf16", "cpu")}
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"--strategies: expected a subset of {STRATEGIES}, found {unknown}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        n_params = build_model(model_dir, args.hidden, args.layers)
        print(f"model: BERT hidden {args.hidden}, {args.layers} layers, {n_params / 1e6:.1f}M parameters "
              f"({n_params * 4 / 2**20:.0f} MiB fp32); {args.workers} workers; batch {args.batch_size} x "
              f"{args.max_length} tokens; {args.steps} steps ({args.skip} warm-up)")
        for round_ in range(args.rounds):
            order = strategies if round_ % 2 == 0 else strategies[::-1]
            for strategy in order:
                load = os.getloadavg()[0]
                ranks = run_strategy(strategy, model_dir, opts, args.workers)
                for r in ranks:
                    r.update(round=round_, load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2))
                results += ranks
                worst = max(ranks, key=lambda r: r["rss_train_peak_mib"])
                print(f"round {round_} {strategy:10s} train-peak RSS/worker {worst['rss_train_peak_mib']:8.0f} MiB "
                      f"(baseline {worst['rss_baseline_mib']:.0f}, process peak {worst['rss_process_peak_mib']:.0f})"
                      f"{'  GPU max alloc %.0f MiB' % worst['gpu_max_allocated_mib'] if 'gpu_max_allocated_mib' in worst else ''}"
                      f"  {ranks[0]['samples_per_s']:.2f} samples/s  trainable {ranks[0]['trainable_params'] / 1e6:.2f}M"
                      f"  load {load:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"params": n_params, "args": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
