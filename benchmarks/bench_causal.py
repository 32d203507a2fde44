"""Causal-LM reranker throughput: raycross vs sentence-transformers 6.2, training and predict.

Same model (a Qwen3 decoder with a BPE vocabulary trained on the WordNet text, yes/no LogitScore, built by
``causal_wordnet.build_wordnet_causal_model``), same data (WordNet context->gloss training pairs), same
batch size, fp32, same optimizer settings, CPU. Training: each trainer runs in its own subprocess,
alternating, for ``--rounds`` rounds; samples/s between step ``--skip`` and the last step (a transformers
TrainerCallback, which both trainers accept). Predict: both CrossEncoders score the same pairs in this
process, alternating (``benchmarks.common.alternate``). Prints the machine, load averages, versions,
medians and ratios, and one ``RESULT`` JSON line.

Run:
    flock /tmp/raycross-bench.lock python benchmarks/bench_causal.py --steps 40 --rounds 2 --predict-pairs 2048
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_training import StepClock, _rate, _rows  # noqa: E402  (the same clock, rate and rows)
from benchmarks.common import machine_report, wordnet_pairs  # noqa: E402


def train_raycross(model_dir: str, steps: int, batch_size: int, skip: int) -> dict:
    from raycross import CrossEncoder
    from raycross.losses import BinaryCrossEntropyLoss
    from raycross.training import CrossEncoderTrainer, CrossEncoderTrainingArguments

    model = CrossEncoder(model_dir, device="cpu")
    clock = StepClock()
    args = CrossEncoderTrainingArguments("/tmp/bench-causal-raycross", max_steps=steps, per_device_train_batch_size=batch_size,
                                         learning_rate=1e-4, save_strategy="no", logging_steps=10_000, disable_tqdm=True,
                                         seed=1)
    CrossEncoderTrainer(model, args, train_dataset=_rows(steps * batch_size), loss=BinaryCrossEntropyLoss(model),
                        callbacks=[clock]).train(resume_from_checkpoint=False)
    return _rate(clock, steps, batch_size, skip)


def train_sentence_transformers(model_dir: str, steps: int, batch_size: int, skip: int) -> dict:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    model = CrossEncoder(model_dir, device="cpu")
    clock = StepClock()
    args = CrossEncoderTrainingArguments("/tmp/bench-causal-st", max_steps=steps, per_device_train_batch_size=batch_size,
                                         learning_rate=1e-4, save_strategy="no", logging_steps=10_000, disable_tqdm=True,
                                         seed=1, report_to="none", use_cpu=True)
    CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(_rows(steps * batch_size)),
                        loss=BinaryCrossEntropyLoss(model), callbacks=[clock]).train()
    return _rate(clock, steps, batch_size, skip)


def bench_predict(model_dir: str, n_pairs: int, batch_size: int, repeats: int) -> dict:
    import numpy as np
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from benchmarks.common import alternate
    from raycross import CrossEncoder

    pairs = wordnet_pairs(n_pairs, seed=3)
    ours, theirs = CrossEncoder(model_dir, device="cpu"), STCrossEncoder(model_dir, device="cpu")
    gap = float(np.abs(ours.predict(pairs[:256]) - theirs.predict(pairs[:256])).max())
    times = alternate({"raycross": lambda: ours.predict(pairs, batch_size=batch_size, show_progress_bar=False),
                       "st": lambda: theirs.predict(pairs, batch_size=batch_size, show_progress_bar=False)},
                      repeats=repeats, warmup=1)
    rates = {name: n_pairs / statistics.median(values) for name, values in times.items()}
    return {"pairs_per_second": rates, "ratio": rates["raycross"] / rates["st"], "max_score_gap": gap,
            "round_ratios": [t / o for o, t in zip(times["raycross"], times["st"])]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--predict-pairs", type=int, default=2048)
    parser.add_argument("--predict-batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--model-dir", default="/tmp/bench-causal-model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)")
    parser.add_argument("--worker", choices=["raycross", "st"], help=argparse.SUPPRESS)
    cli = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if cli.threads:
        import torch

        torch.set_num_threads(cli.threads)
    if cli.worker:  # one training measurement in a fresh process
        run = train_raycross if cli.worker == "raycross" else train_sentence_transformers
        print("RESULT " + json.dumps(run(cli.model_dir, cli.steps, cli.batch_size, cli.skip)), flush=True)
        return

    import logging

    logging.disable(logging.WARNING)
    from benchmarks.causal_wordnet import build_wordnet_causal_model

    build_wordnet_causal_model(Path(cli.model_dir), hidden=cli.hidden, layers=cli.layers)
    print(machine_report())
    print(f"setup: Qwen3 {cli.layers} layers x {cli.hidden} + BPE vocab trained on WordNet, yes/no LogitScore, "
          f"WordNet train pairs, training batch {cli.batch_size} ({cli.steps} steps, measured after {cli.skip}), "
          f"predict {cli.predict_pairs} pairs in batches of {cli.predict_batch_size}, fp32, CPU", flush=True)
    train: dict[str, list[dict]] = {"raycross": [], "st": []}
    ratios = []
    for round_ in range(cli.rounds):
        order = ("raycross", "st") if round_ % 2 == 0 else ("st", "raycross")  # a load trend favours neither
        for worker in order:
            command = [sys.executable, __file__, "--worker", worker, "--steps", str(cli.steps), "--skip", str(cli.skip),
                       "--batch-size", str(cli.batch_size), "--model-dir", cli.model_dir, "--threads", str(cli.threads)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            train[worker].append(result)
            print(f"train round {round_ + 1} {worker:8s}: {result['samples_per_second']:.1f} samples/s "
                  f"(load {result['load']:.1f})", flush=True)
        ratios.append(train["raycross"][-1]["samples_per_second"] / train["st"][-1]["samples_per_second"])
    predict = bench_predict(cli.model_dir, cli.predict_pairs, cli.predict_batch_size, repeats=cli.rounds + 1)
    summary = {
        "train_samples_per_second": {w: statistics.median(r["samples_per_second"] for r in rs) for w, rs in train.items()},
        "train_ratio": statistics.median(ratios), "train_round_ratios": ratios,
        "predict_pairs_per_second": predict["pairs_per_second"], "predict_ratio": predict["ratio"],
        "predict_round_ratios": predict["round_ratios"], "predict_max_score_gap": predict["max_score_gap"],
        "load_average_after": os.getloadavg(),
    }
    print(f"training: raycross/st {summary['train_ratio']:.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"predict: {predict['ratio']:.2f}x; load average after {os.getloadavg()}")
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
