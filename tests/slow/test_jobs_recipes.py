"""Every jobs/configs training recipe runs end to end offline on the real bundled/shared data.

Run in this process through the CLI (the job-submission path itself is covered by test_jobs.py), with
tiny models swapped in by flags and a few steps, each checked against an independent computation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import make_tiny_model
from raycross import cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "jobs" / "configs"
SMALL = ["--num-workers", "0", "--max-steps", "2", "--batch-size", "4", "--learning-rate", "1e-3",
         "--set", "training.warmup_ratio=0", "--set", "training.load_best_model_at_end=false",
         "--set", "training.report_to=none", "--set", "model.max_length=128"]  # the tiny models' limit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe-models")
    return {
        "reranker": make_tiny_model(root / "reranker", num_labels=1, seed=4),
        "teacher": make_tiny_model(root / "teacher", num_labels=1, seed=5),
        "nli": make_tiny_model(root / "nli", num_labels=3, seed=6),
        "encoder": make_tiny_model(root / "encoder", encoder_only=True, seed=7),
    }


def _run(capsys, argv: list[str]) -> dict:
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-4000:]
    return json.loads(captured.out[captured.out.rindex('{\n  "command"'):])


def _logits(model_dir: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return np.stack([model(**tokenizer(a, b, return_tensors="pt")).logits[0].numpy() for a, b in pairs])


def test_listwise_lambda_recipe_trains_on_mined_lists(tiny, tmp_path, capsys):
    out, mined = tmp_path / "listwise", tmp_path / "mined-lists"
    summary = _run(capsys, [
        "train", "-c", str(CONFIGS / "listwise_lambda.yaml"), "--model", str(tiny["reranker"]),
        "--output-dir", str(out), *SMALL,
        "--set", f"mining.model={tiny['encoder']}", "--set", "mining.num_negatives=3",
        "--set", "mining.execution=local", "--set", f"mining.output_path={mined}",
        "--set", "data.train.offline.limit=16", "--set", "data.corpus.offline.limit=200",
        "--set", "evaluator.data.limit=8", "--set", "loss.kwargs.mini_batch_size=8",
    ])
    assert summary["global_step"] == 2 and np.isfinite(summary["metrics"]["eval_wordnet-dev_ndcg@10"])
    # The recipe's shape: (query, [positive, 3 negatives], [1, 0, 0, 0]) lists, as LambdaLoss takes them.
    rows = pq.read_table(mined).to_pylist()
    train = pq.read_table(REPO / "raycross/resources/wordnet-mini/train.parquet").slice(0, 16).to_pylist()
    positives = {r["query"]: r["positive"] for r in train}
    assert len(rows) == 16
    for row in rows:
        docs, labels = [v for k, v in row.items() if k != "query" and k != "labels"][0], row["labels"]
        assert labels == [1, 0, 0, 0] and docs[0] == positives[row["query"]] and len(set(docs)) == 4
    trained = _logits(out, [("a cat", "a dog")])
    assert not np.allclose(trained, _logits(tiny["reranker"], [("a cat", "a dog")]), atol=1e-5)


def test_nli_recipe_reports_the_macro_f1_of_the_final_model(tiny, shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAYCROSS_SHARED_DATA", str(shared_data))
    out = tmp_path / "nli"
    summary = _run(capsys, [
        "train", "-c", str(CONFIGS / "nli_classification.yaml"), "--model", str(tiny["nli"]),
        "--output-dir", str(out), *SMALL,
        "--set", "data.train.offline.limit=32", "--set", "evaluator.data.offline.limit=40",
        "--set", "evaluator.kwargs.write_csv=false",
    ])
    # Independent macro F1 of the saved model on the same 40 SNLI test pairs (labels mapped as in the config).
    label_map = {"entailment": 0, "neutral": 1, "contradiction": 2}
    rows = pq.read_table(shared_data / "snli" / "test.parquet").slice(0, 40).to_pylist()
    predicted = _logits(out, [(r["premise"], r["hypothesis"]) for r in rows]).argmax(axis=1)
    gold = np.array([label_map[r["label"]] for r in rows])
    f1s = []
    for c in range(3):
        tp = np.sum((predicted == c) & (gold == c))
        precision = tp / max(np.sum(predicted == c), 1)
        recall = tp / max(np.sum(gold == c), 1)
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    assert summary["metrics"]["eval_nli-dev_f1_macro"] == pytest.approx(np.mean(f1s), abs=1e-6)


def test_distillation_recipe_learns_from_teacher_scores(tiny, tmp_path, capsys):
    out = tmp_path / "distill"
    summary = _run(capsys, [
        "train", "-c", str(CONFIGS / "distill_margin_mse.yaml"), "--model", str(tiny["reranker"]),
        "--output-dir", str(out), *SMALL,
        "--set", f"teacher.model={tiny['teacher']}", "--set", f"mining.model={tiny['encoder']}",
        "--set", "mining.execution=local", "--set", "data.train.offline.limit=16",
        "--set", "data.corpus.offline.limit=200", "--set", "evaluator.data.limit=8",
    ])
    assert summary["global_step"] == 2
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert losses and all(np.isfinite(losses))
    card = (out / "README.md").read_text()
    assert "MarginMSELoss" in card


def test_listwise_distillation_recipe_scores_then_trains(tiny, tmp_path, capsys):
    scores, out, mined = tmp_path / "scores", tmp_path / "student", tmp_path / "mined"
    data = ["--set", f"mining.model={tiny['encoder']}", "--set", "mining.execution=local",
            "--set", f"mining.output_path={mined}", "--set", "mining.num_negatives=3",
            "--set", "data.train.offline.limit=16", "--set", "data.corpus.offline.limit=200",
            "--set", "teacher.execution=local", "--set", "teacher.chunk_rows=8"]
    scored = _run(capsys, ["score", "-c", str(CONFIGS / "distill_listwise.yaml"), "--teacher", str(tiny["teacher"]),
                           "--output", str(scores), *data])
    assert (scored["rows"], scored["files"], scored["columns"][-1]) == (16, 2, "scores")
    rows = pq.read_table(scores).to_pylist()
    for row in rows[:4]:  # the teacher's raw logits of every (query, document) of the mined list, in order
        docs = next(v for k, v in row.items() if isinstance(v, list) and k != "scores")
        np.testing.assert_allclose(row["scores"], _logits(tiny["teacher"], [(row["query"], d) for d in docs])[:, 0],
                                   atol=1e-5)
    # `train` with the same teacher.output_path reuses the finished scores and trains the student on them
    mtime = sorted(scores.glob("part-*.parquet"))[0].stat().st_mtime_ns
    summary = _run(capsys, ["train", "-c", str(CONFIGS / "distill_listwise.yaml"), "--model", str(tiny["reranker"]),
                            "--output-dir", str(out), *SMALL, "--set", f"teacher.model={tiny['teacher']}",
                            "--set", f"teacher.output_path={scores}", "--set", "evaluator.data.limit=8",
                            "--set", "loss.kwargs.mini_batch_size=8", *data])
    assert summary["global_step"] == 2 and np.isfinite(summary["metrics"]["eval_wordnet-dev_ndcg@10"])
    assert sorted(scores.glob("part-*.parquet"))[0].stat().st_mtime_ns == mtime
    assert "ListNetLoss" in (out / "README.md").read_text()
