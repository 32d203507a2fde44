"""Training throughput vs the number of Ray Train workers (raycross only).

For each n in `--workers`, a fresh subprocess fine-tunes MiniLM-L6 (+ a 1-label head) with
BinaryCrossEntropyLoss on WordNet context->gloss pairs for `--steps` optimizer steps with
``per_device_train_batch_size=--batch-size`` and ``num_workers=n`` (n = 0: in this process, without Ray
Train; n > 0: Ray Train workers with ``resources_per_worker={"CPU": 1}``; ``use_gpu=None`` lets the
trainer use one GPU per worker when the machine has GPUs). The global batch is ``batch_size * max(n, 1)``,
so every worker gets a full per-device batch per step.

Throughput is ``result.metrics["train_samples_per_second"]`` (samples over all workers / train runtime,
which includes the first steps) and the logged ``samples_per_second`` of the last logging window in
``result.log_history`` (``logging_steps=10``: steady state, start-up excluded when `--steps` > 10). The Ray Train start-up (~30 s per run) is
reported separately as the process wall time.

Caveat: on a CPU-only machine with 2 cores the workers share those 2 cores (and n = 0 uses both through
torch's intra-op threads while a Ray worker with {"CPU": 1} gets 1 thread), so the curve measures Ray
Train's overhead, not scaling. On a multi-GPU machine the same command measures multi-GPU scaling.

Run:
    python benchmarks/bench_scaling.py --workers 0,1,2 --steps 30 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` importable when run as a script
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.bench_training import _rows  # noqa: E402
from benchmarks.common import machine_report  # noqa: E402


def train(num_workers: int, steps: int, batch_size: int) -> dict[str, float]:
    """One training run with `num_workers` Ray Train workers (0 = in-process); its throughput numbers."""
    from raycross import CrossEncoder
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.resources import minilm_path
    from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    if num_workers > 0:
        import ray

        # n workers x {"CPU": 1} may take every logical CPU of a small machine; Ray Data's tasks that feed the
        # workers then could not be scheduled. Announce one spare logical CPU (no physical core is added).
        ray.init(num_cpus=max(os.cpu_count() or 1, num_workers + 1), include_dashboard=False, log_to_driver=False)
    model = CrossEncoder(str(minilm_path()), num_labels=1, device="cpu")
    args = CrossEncoderTrainingArguments(
        f"/tmp/bench-scaling-{num_workers}", max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=2e-5, save_strategy="no", logging_steps=10, disable_tqdm=True, seed=1,
        num_workers=num_workers, use_gpu=None, resources_per_worker={"CPU": 1} if num_workers > 0 else None,
    )
    global_batch = batch_size * max(num_workers, 1)
    trainer = CrossEncoderTrainer(model, args, train_dataset=_rows(steps * global_batch),
                                  loss=BinaryCrossEntropyLoss(model))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=False)
    wall = time.perf_counter() - started
    windows = [e["samples_per_second"] for e in result.log_history if "samples_per_second" in e]
    return {
        "num_workers": num_workers, "global_batch": global_batch, "steps": result.global_step,
        "samples_per_second": result.metrics["train_samples_per_second"],
        "last_window_samples_per_second": windows[-1] if windows else None,
        "train_runtime": result.metrics.get("train_runtime"), "train_call_s": wall, "load": os.getloadavg()[0],
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated numbers of Ray Train workers")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16, help="per worker")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    cli = parser.parse_args()
    logging.disable(logging.WARNING)

    if cli.worker is not None:  # one run in a fresh process
        result = train(cli.worker, cli.steps, cli.batch_size)
        print("RESULT " + json.dumps(result), flush=True)
        return result

    print(machine_report())
    print(f"setup: MiniLM-L6 + 1-label head, BCE, WordNet train pairs, {cli.steps} steps, per-worker batch "
          f"{cli.batch_size}, fp32, workers {cli.workers}, resources_per_worker CPU 1, use_gpu None", flush=True)
    runs: dict[int, dict] = {}
    for n in (int(x) for x in cli.workers.split(",")):
        command = [sys.executable, __file__, "--worker", str(n), "--steps", str(cli.steps),
                   "--batch-size", str(cli.batch_size)]
        started = time.perf_counter()
        stdout = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        runs[n] = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
        runs[n]["process_s"] = time.perf_counter() - started
        print(f"workers {n}: {runs[n]['samples_per_second']:.1f} samples/s overall, last window "
              f"{runs[n]['last_window_samples_per_second'] or float('nan'):.1f} samples/s "
              f"(process {runs[n]['process_s']:.0f} s, load {runs[n]['load']:.1f})", flush=True)

    def speedup(n: int, ref: int, key: str) -> float | None:
        if ref not in runs or not runs[ref].get(key) or not runs[n].get(key):
            return None
        return runs[n][key] / runs[ref][key]

    fmt = lambda x: f"{x:.2f}x" if x is not None else "-"  # noqa: E731
    print(f"\n{'workers':>7} {'samples/s':>10} {'vs n=0':>7} {'vs n=1':>7} {'last win':>9} {'vs n=0':>7} "
          f"{'vs n=1':>7} {'process s':>9}")
    for n, r in runs.items():
        last = r["last_window_samples_per_second"]
        print(f"{n:>7} {r['samples_per_second']:10.1f} {fmt(speedup(n, 0, 'samples_per_second')):>7} "
              f"{fmt(speedup(n, 1, 'samples_per_second')):>7} {last or float('nan'):9.1f} "
              f"{fmt(speedup(n, 0, 'last_window_samples_per_second')):>7} "
              f"{fmt(speedup(n, 1, 'last_window_samples_per_second')):>7} {r['process_s']:9.0f}")
        r["speedup_vs_0"] = speedup(n, 0, "samples_per_second")
        r["speedup_vs_1"] = speedup(n, 1, "samples_per_second")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    result = {"steps": cli.steps, "batch_size": cli.batch_size, "workers": list(runs),
              "samples_per_second": {str(n): r["samples_per_second"] for n, r in runs.items()},
              "last_window_samples_per_second": {str(n): r["last_window_samples_per_second"] for n, r in runs.items()},
              "runs": {str(n): r for n, r in runs.items()}}
    print("RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
