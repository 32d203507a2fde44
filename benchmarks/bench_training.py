"""Training throughput: raycross (in-process) vs the sentence-transformers CrossEncoderTrainer.

Same model (MiniLM-L6 + a fresh 1-label head), same data (WordNet context->gloss training pairs), same
batch size, fp32, same optimizer settings (AdamW, linear schedule, grad clipping at 1.0), CPU. Each
trainer runs in its own subprocess, alternating, for `--rounds` rounds; samples/s is measured between
step `--skip` and the last step (a transformers TrainerCallback, which both trainers accept), so start-up
costs are excluded. Prints the machine, load averages, versions, the median samples/s and the ratio.

Run:
    python benchmarks/bench_training.py --steps 60 --batch-size 32 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("RAYCROSS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


from transformers import TrainerCallback


class StepClock(TrainerCallback):
    """on_step_end timestamps (a transformers TrainerCallback, which both trainers accept)."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def on_step_end(self, args, state, control, **kwargs):
        self.times[state.global_step] = time.perf_counter()


def _rows(n: int) -> dict[str, list]:
    import pyarrow.parquet as pq

    table = pq.read_table(DATA / "wordnet-context2gloss" / "train-pairs.parquet")
    import numpy as np

    idx = np.random.default_rng(0).permutation(table.num_rows)[:n]
    return table.take(idx).to_pydict()


def run_raycross(steps: int, batch_size: int, skip: int, extra: dict) -> dict:
    from raycross import CrossEncoder
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.resources import minilm_path
    from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(str(minilm_path()), num_labels=1, device="cpu")
    clock = StepClock()
    args = CrossEncoderTrainingArguments(
        "/tmp/bench-raycross", max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=2e-5,
        save_strategy="no", logging_steps=10_000, disable_tqdm=True, seed=1, **extra,
    )
    trainer = CrossEncoderTrainer(model, args, train_dataset=_rows(steps * batch_size),
                                  loss=BinaryCrossEntropyLoss(model), callbacks=[clock])
    trainer.train(resume_from_checkpoint=False)
    return _rate(clock, steps, batch_size, skip)


def run_sentence_transformers(steps: int, batch_size: int, skip: int, extra: dict) -> dict:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from raycross.resources import minilm_path

    model = CrossEncoder(str(minilm_path()), num_labels=1, device="cpu")
    clock = StepClock()
    args = CrossEncoderTrainingArguments(
        "/tmp/bench-st", max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=2e-5,
        save_strategy="no", logging_steps=10_000, disable_tqdm=True, seed=1, report_to="none", use_cpu=True,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(_rows(steps * batch_size)),
                                  loss=BinaryCrossEntropyLoss(model), callbacks=[clock])
    trainer.train()
    return _rate(clock, steps, batch_size, skip)


def _rate(clock: StepClock, steps: int, batch_size: int, skip: int) -> dict:
    elapsed = clock.times[steps] - clock.times[skip]
    return {"samples_per_second": (steps - skip) * batch_size / elapsed, "seconds": elapsed,
            "load": os.getloadavg()[0]}


def _versions() -> dict[str, str]:
    import ray
    import sentence_transformers
    import torch
    import transformers

    import raycross

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence-transformers": sentence_transformers.__version__, "ray": ray.__version__,
            "raycross": raycross.__version__, "torch_threads": str(torch.get_num_threads())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=5, help="steps excluded from the measure (warm-up)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--raycross-args", default="{}", help="extra CrossEncoderTrainingArguments as JSON")
    parser.add_argument("--worker", choices=["raycross", "st"], help=argparse.SUPPRESS)
    cli = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    extra = json.loads(cli.raycross_args)

    if cli.worker:  # one measurement in a fresh process
        run = run_raycross if cli.worker == "raycross" else run_sentence_transformers
        print("RESULT " + json.dumps(run(cli.steps, cli.batch_size, cli.skip, extra)), flush=True)
        return

    import logging

    logging.disable(logging.WARNING)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"load average before: {os.getloadavg()}")
    print("versions: " + json.dumps(_versions()))
    print(f"setup: MiniLM-L6 + 1-label head, WordNet train pairs, batch {cli.batch_size}, fp32, {cli.steps} steps "
          f"(measured after step {cli.skip}), raycross extra args {extra}")
    results: dict[str, list[dict]] = {"raycross": [], "st": []}
    ratios = []
    for round_ in range(cli.rounds):
        # alternate the order: a load trend on the machine then favours neither side
        order = ("raycross", "st") if round_ % 2 == 0 else ("st", "raycross")
        for worker in order:
            command = [sys.executable, __file__, "--worker", worker, "--steps", str(cli.steps), "--skip", str(cli.skip),
                       "--batch-size", str(cli.batch_size), "--raycross-args", cli.raycross_args]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            results[worker].append(result)
            print(f"round {round_ + 1} {worker:8s}: {result['samples_per_second']:.1f} samples/s "
                  f"({result['seconds']:.1f} s, load {result['load']:.1f})", flush=True)
        ratios.append(results["raycross"][-1]["samples_per_second"] / results["st"][-1]["samples_per_second"])
        print(f"round {round_ + 1} ratio raycross/st: {ratios[-1]:.2f}x", flush=True)
    ours = statistics.median(r["samples_per_second"] for r in results["raycross"])
    theirs = statistics.median(r["samples_per_second"] for r in results["st"])
    print(f"load average after: {os.getloadavg()}")
    print(f"median samples/s: raycross {ours:.1f}, sentence-transformers {theirs:.1f}; "
          f"median of the per-round ratios {statistics.median(ratios):.2f}x (rounds: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    print("RESULT " + json.dumps({"raycross": ours, "sentence-transformers": theirs, "ratio": statistics.median(ratios),
                                  "round_ratios": ratios}), flush=True)


if __name__ == "__main__":
    main()
