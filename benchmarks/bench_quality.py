"""Reranking quality at the same training budget: raycross vs the sentence-transformers CrossEncoderTrainer.

Both sides fine-tune the same starting point (MiniLM-L6 + a fresh 1-label head, created once with a
fixed seed, saved to a temporary directory and loaded from there by both libraries) with
BinaryCrossEntropyLoss on the same fixed sample of `--steps * --batch-size` WordNet context->gloss
training pairs (lr 4e-5, warmup_ratio 0.1, linear schedule, fp32, seed 12, CPU). Each trainer runs in
its own subprocess (as in bench_training.py) and saves its final model; both final models are then
scored by the SAME evaluator (raycross ``CrossEncoderRerankingEvaluator`` on the first `--eval-queries`
WordNet evaluation queries; the sentence-transformers model is loaded into a raycross ``CrossEncoder``).

Prints the machine, the setup, the candidate-order baseline, MAP / MRR@10 / NDCG@10 and the training
seconds of each side, the NDCG@10 difference in points (raycross minus sentence-transformers, x100),
and a final ``RESULT {json}`` line.

Run:
    python benchmarks/bench_quality.py --steps 300 --batch-size 32 --eval-queries 1000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` importable when run as a script
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.bench_evaluation import wordnet_samples  # noqa: E402
from benchmarks.bench_training import _rows  # noqa: E402
from benchmarks.common import machine_report  # noqa: E402

SEED = 12
METRICS = ("map", "mrr@10", "ndcg@10")


def make_initial_model(path: Path) -> None:
    """MiniLM + a fresh 1-label head (seeded), saved to `path`: the common starting point of both sides."""
    import torch

    from raycross import CrossEncoder
    from raycross.resources import minilm_path

    torch.manual_seed(SEED)
    CrossEncoder(str(minilm_path()), num_labels=1, device="cpu").save_pretrained(path)


def train_raycross(init: str, out: str, steps: int, batch_size: int, lr: float) -> dict[str, float]:
    """Fine-tune `init` with the raycross trainer (in-process) and save the final model to `out`."""
    from raycross import CrossEncoder
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(init, device="cpu")
    args = CrossEncoderTrainingArguments(
        f"{out}-run", max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr, warmup_ratio=0.1,
        save_strategy="no", logging_steps=max(1, steps // 6), disable_tqdm=True, seed=SEED, num_workers=0,
    )
    trainer = CrossEncoderTrainer(model, args, train_dataset=_rows(steps * batch_size),
                                  loss=BinaryCrossEntropyLoss(model))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=False)
    train_s = time.perf_counter() - started
    model.save_pretrained(out)
    return {"train_s": train_s, "train_loss": result.training_loss, "steps": result.global_step}


def train_sentence_transformers(init: str, out: str, steps: int, batch_size: int, lr: float) -> dict[str, float]:
    """Fine-tune `init` with the sentence-transformers trainer and save the final model to `out`."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    model = CrossEncoder(init, device="cpu")
    args = CrossEncoderTrainingArguments(
        f"{out}-run", max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr, warmup_ratio=0.1,
        save_strategy="no", logging_steps=max(1, steps // 6), disable_tqdm=True, seed=SEED, report_to="none",
        use_cpu=True,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(_rows(steps * batch_size)),
                                  loss=BinaryCrossEntropyLoss(model))
    started = time.perf_counter()
    output = trainer.train()
    train_s = time.perf_counter() - started
    model.save_pretrained(out)
    return {"train_s": train_s, "train_loss": output.training_loss, "steps": output.global_step}


WORKERS = {"raycross": train_raycross, "st": train_sentence_transformers}


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-5)
    parser.add_argument("--eval-queries", type=int, default=1000)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--init", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    cli = parser.parse_args()
    logging.disable(logging.WARNING)

    if cli.worker:  # one training run in a fresh process
        result = WORKERS[cli.worker](cli.init, cli.out, cli.steps, cli.batch_size, cli.lr)
        print("RESULT " + json.dumps(result), flush=True)
        return result

    from raycross import CrossEncoder
    from raycross.evaluation import CrossEncoderRerankingEvaluator

    print(machine_report())
    print(f"setup: MiniLM-L6 + seeded 1-label head, BinaryCrossEntropyLoss, {cli.steps} steps x batch {cli.batch_size} "
          f"WordNet train pairs, lr {cli.lr}, warmup_ratio 0.1, fp32, seed {SEED}, CPU; "
          f"evaluation: raycross CrossEncoderRerankingEvaluator on {cli.eval_queries} WordNet queries", flush=True)
    trained: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        init = Path(tmp) / "init"
        make_initial_model(init)
        for side in ("raycross", "st"):
            out = Path(tmp) / side
            command = [sys.executable, __file__, "--worker", side, "--init", str(init), "--out", str(out),
                       "--steps", str(cli.steps), "--batch-size", str(cli.batch_size), "--lr", str(cli.lr)]
            stdout = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            trained[side] = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
            print(f"{side:8s} trained: {trained[side]['train_s']:.1f} s, {trained[side]['steps']} steps, "
                  f"train loss {trained[side]['train_loss']:.4f} (load {os.getloadavg()[0]:.1f})", flush=True)

        evaluator = CrossEncoderRerankingEvaluator(wordnet_samples(cli.eval_queries), name="wordnet", batch_size=128,
                                                   write_csv=False)
        for side in ("raycross", "st"):
            scores[side] = evaluator(CrossEncoder(str(Path(tmp) / side), device="cpu"))

    baseline = {k: scores["raycross"][f"wordnet_base_{k}"] for k in METRICS}
    ours = {k: scores["raycross"][f"wordnet_{k}"] for k in METRICS}
    theirs = {k: scores["st"][f"wordnet_{k}"] for k in METRICS}
    print(f"evaluation: {len(evaluator.samples)} queries, {evaluator.num_pairs()} pairs")
    print(f"{'':24s}" + "".join(f"{k:>10s}" for k in METRICS) + f"{'train s':>10s}")
    print(f"{'candidate order':24s}" + "".join(f"{baseline[k]:10.4f}" for k in METRICS))
    print(f"{'raycross':24s}" + "".join(f"{ours[k]:10.4f}" for k in METRICS) + f"{trained['raycross']['train_s']:10.1f}")
    print(f"{'sentence-transformers':24s}" + "".join(f"{theirs[k]:10.4f}" for k in METRICS)
          + f"{trained['st']['train_s']:10.1f}")
    delta = 100 * (ours["ndcg@10"] - theirs["ndcg@10"])
    print(f"NDCG@10 difference raycross - sentence-transformers: {delta:+.2f} points")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    result = {
        "raycross_ndcg10": ours["ndcg@10"], "st_ndcg10": theirs["ndcg@10"], "delta_points": delta,
        "baseline_ndcg10": baseline["ndcg@10"],
        "raycross_map": ours["map"], "st_map": theirs["map"], "baseline_map": baseline["map"],
        "raycross_mrr10": ours["mrr@10"], "st_mrr10": theirs["mrr@10"], "baseline_mrr10": baseline["mrr@10"],
        "raycross_train_s": trained["raycross"]["train_s"], "st_train_s": trained["st"]["train_s"],
        "steps": cli.steps, "batch_size": cli.batch_size, "eval_queries": len(evaluator.samples),
    }
    print("RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
