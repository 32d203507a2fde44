"""Distillation on real data: a MiniLM-L6 teacher fine-tuned on WordNet pairs scores candidate lists; a
2-layer student (MiniLM's first two layers) learns them with ListNet, against the same student trained on
the hard labels of the same lists at the same budget (steps x lists per step). NDCG@10 reranking the
candidates of the WordNet evaluation queries.

The lists: for each training query (words disjoint from the evaluation words), its positive definition
and the other senses of the same word (the data's own hard negatives, `train-pairs.parquet`).

Run (CPU, about 20 minutes on 2 quiet cores; each stage is skipped when its output exists):
    python benchmarks/distill_wordnet.py --out /tmp/distill-wordnet --teacher-steps 300 --student-steps 400
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import SHARED_DATA, machine_report  # noqa: E402
from benchmarks.train_wordnet import rerank_samples  # noqa: E402

ROOT = SHARED_DATA / "wordnet-context2gloss"
logger = logging.getLogger("distill_wordnet")


def train_lists(n_queries: int, seed: int = 0) -> dict[str, list]:
    """(query, [passages], [labels]) for `n_queries` training queries with one positive and >= 2 negatives."""
    import numpy as np
    import pyarrow.parquet as pq

    rows = pq.read_table(ROOT / "train-pairs.parquet").to_pylist()
    lists: dict[str, tuple[list, list]] = {}
    for r in rows:
        docs, labels = lists.setdefault(r["query"], ([], []))
        docs.append(r["passage"])
        labels.append(float(r["label"]))
    keep = [q for q, (d, l) in lists.items() if sum(l) == 1 and len(d) >= 3]
    picked = [keep[i] for i in np.random.default_rng(seed).permutation(len(keep))[:n_queries]]
    return {"query": picked, "passages": [lists[q][0] for q in picked], "labels": [lists[q][1] for q in picked]}


def train(model, data, loss, out: Path, steps: int, batch_size: int, lr: float, seed: int) -> dict:
    from raycross import CrossEncoderTrainer, CrossEncoderTrainingArguments

    args = CrossEncoderTrainingArguments(
        str(out), max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr, warmup_ratio=0.1,
        save_strategy="no", logging_steps=50, seed=seed, report_to=[], disable_tqdm=True,
    )
    started = time.perf_counter()
    result = CrossEncoderTrainer(model, args, train_dataset=data, loss=loss).train()
    return {"steps": result.global_step, "train_loss": round(result.training_loss, 4),
            "seconds": round(time.perf_counter() - started, 1)}


def student_init(path: Path, layers: int) -> str:
    """MiniLM's first `layers` layers and a fresh 1-label head (seeded), saved once."""
    import torch
    from torch import nn

    from raycross import CrossEncoder
    from raycross.resources import minilm_path

    if not (path / "config.json").exists():
        torch.manual_seed(0)
        model = CrossEncoder(str(minilm_path()), num_labels=1, device="cpu")
        hf = model.hf_model
        hf.bert.encoder.layer = nn.ModuleList(list(hf.bert.encoder.layer)[:layers])
        hf.config.num_hidden_layers = layers
        model.save_pretrained(path)
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/distill-wordnet"))
    p.add_argument("--teacher", type=Path, help="a trained teacher directory (default: train one into OUT/teacher)")
    p.add_argument("--teacher-steps", type=int, default=300)
    p.add_argument("--queries", type=int, default=4000, help="training lists scored by the teacher")
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--student-steps", type=int, default=400)
    p.add_argument("--lists-per-step", type=int, default=4)
    p.add_argument("--student-lr", type=float, default=1e-4)
    p.add_argument("--eval-queries", type=int, default=None, help="default: all 3,418")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raycross import CrossEncoder, score_with_teacher
    from raycross.evaluation import CrossEncoderRerankingEvaluator
    from raycross.losses import BinaryCrossEntropyLoss, ListNetLoss
    from raycross.resources import minilm_path

    print(machine_report(), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"command": " ".join(sys.argv)}
    evaluator = CrossEncoderRerankingEvaluator(rerank_samples(ROOT, a.eval_queries), name="wordnet", batch_size=128)

    def ndcg(model) -> dict:
        r = evaluator(model)
        return {"ndcg@10": round(r["wordnet_ndcg@10"], 4), "mrr@10": round(r["wordnet_mrr@10"], 4),
                "candidate_order_ndcg@10": round(r["wordnet_base_ndcg@10"], 4)}

    # 1. the teacher
    teacher_dir = a.teacher or a.out / "teacher"
    if not (teacher_dir / "config.json").exists():
        teacher = CrossEncoder(str(minilm_path()), num_labels=1, device="cpu")
        summary["teacher_training"] = train(teacher, str(ROOT / "train-pairs.parquet"), BinaryCrossEntropyLoss(teacher),
                                            teacher_dir, a.teacher_steps, 32, 4e-5, seed=12)
    teacher = CrossEncoder(str(teacher_dir), device="cpu")
    summary["teacher"] = ndcg(teacher)
    logger.info("teacher: %s", summary["teacher"])

    # 2. the teacher scores every document of the training lists (resumable, parquet)
    lists_path = a.out / "lists.parquet"
    if not lists_path.exists():
        pq.write_table(pa.table(train_lists(a.queries)), lists_path)
    started = time.perf_counter()
    scored = score_with_teacher(str(lists_path), teacher, a.out / "scored", batch_size=128, execution="local")
    summary["scoring_seconds"] = round(time.perf_counter() - started, 1)
    del teacher

    # 3. two students from the same initialization, the same lists and budget; only the labels differ
    init = student_init(a.out / f"student-init-{a.student_layers}l", a.student_layers)
    summary["student_untrained"] = ndcg(CrossEncoder(init, device="cpu"))
    for name, data in (("hard_labels", str(lists_path)), ("distilled", scored)):
        student = CrossEncoder(init, device="cpu")
        run = train(student, data, ListNetLoss(student), a.out / f"student-{name}", a.student_steps,
                    a.lists_per_step, a.student_lr, seed=7)
        summary[f"student_{name}"] = {**ndcg(student), **run}
        logger.info("student %s: %s", name, summary[f"student_{name}"])
    summary["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
