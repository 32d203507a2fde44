"""The raycross command line: help, flags -> config keys, dry runs, config errors, predict and evaluate."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from raycross import cli
from raycross.config.prepare import add_teacher_scores
from raycross.resources import QUICKSTART_DATA

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "jobs" / "configs" / "reranker_bce.yaml")
SUBCOMMANDS = ("train", "mine", "score", "evaluate", "predict", "tune", "quickstart")


def _reference_scores(model_dir: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    """sigmoid(logits) straight from transformers: an independent reference for a 1-label model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for a, b in pairs:  # one pair at a time: no padding effects
            features = tokenizer(a, b, truncation="longest_first", max_length=128, return_tensors="pt")
            out.append(torch.sigmoid(model(**features).logits[0, 0]).item())
    return np.array(out)


# ------------------------------------------------------------------------------------------ help
def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out
    assert "--set training.learning_rate=3e-5" in out


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("train", ["--config", "--set", "--dry-run", "--output-dir", "--num-workers", "--max-steps", "--use-gpu"]),
        ("mine", ["--config", "--output", "--num-negatives", "--output-format"]),
        ("score", ["--config", "--teacher", "--output", "--batch-size", "--execution", "--num-workers", "--use-gpu"]),
        ("evaluate", ["--model", "--output"]),
        ("predict", ["--model", "--input", "--output", "--batch-size"]),
        ("tune", ["--num-samples", "--max-steps", "run_sweep_from_config"]),
        ("quickstart", ["--output-dir", "--max-steps"]),
    ],
)
def test_subcommand_help(command, flags, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"raycross {command}" in out
    for flag in flags:
        assert flag in out, flag


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "raycross.cli", "train", "--help"], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "training.output_dir" in result.stdout


# --------------------------------------------------------------------------------- flags -> keys
def test_training_flags_override_config_keys(tiny_model_path, tmp_path):
    args = cli.build_parser().parse_args([
        "train", "-c", RECIPE, "--model", str(tiny_model_path), "--output-dir", str(tmp_path / "run"),
        "--num-workers", "3", "--max-steps", "7", "--learning-rate", "1e-4", "--batch-size", "4", "--no-use-gpu",
        "--set", "training.max_steps=99", "--set", "data.train.offline.limit=10",
    ])
    config = cli.resolve_config(args)
    training = config["training"]
    assert training["output_dir"] == str(tmp_path / "run")
    assert (training["num_workers"], training["max_steps"], training["learning_rate"]) == (3, 7, 1e-4)
    assert (training["per_device_train_batch_size"], training["use_gpu"]) == (4, False)
    # --model replaces the model and drops its offline fallback; other model keys stay.
    assert config["model"] == {"name_or_path": str(tiny_model_path), "num_labels": 1, "max_length": 256}
    assert config["data"]["train"]["offline"]["limit"] == 10
    # the recipe's other values are untouched
    assert training["warmup_ratio"] == 0.1 and config["loss"]["kwargs"]["pos_weight"] == 5


def test_mine_and_predict_flags(tmp_path, tiny_encoder_path, tiny_model_path):
    config_path = REPO / "jobs" / "configs" / "mine_hard_negatives.yaml"
    args = cli.build_parser().parse_args(["mine", "-c", str(config_path), "--model", str(tiny_encoder_path),
                                          "--output", str(tmp_path / "mined"), "--num-negatives", "2"])
    config = cli.resolve_config(args)
    assert config["mining"]["model"] == str(tiny_encoder_path)
    assert (config["mining"]["output_path"], config["mining"]["num_negatives"]) == (str(tmp_path / "mined"), 2)

    pairs = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"query": ["a"], "passage": ["b"]}), pairs)
    args = cli.build_parser().parse_args(["predict", "--model", str(tiny_model_path), "--input", str(pairs),
                                          "--batch-size", "2"])
    config = cli.resolve_config(args)
    assert config["data"]["input"] == {"path": str(pairs)}
    assert config["predict"] == {"batch_size": 2}


def test_dry_run_prints_the_resolved_config(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RAYCROSS_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.delenv("RAYCROSS_STORAGE_PATH", raising=False)
    code = cli.main(["train", "-c", RECIPE, "--dry-run", "--set", "training.learning_rate=3e-5", "--max-steps", "5"])
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    original = yaml.safe_load(Path(RECIPE).read_text())
    assert printed["training"]["learning_rate"] == 3e-5 and printed["training"]["max_steps"] == 5
    assert printed["training"]["output_dir"] == f"{tmp_path}/reranker-bce"  # ${RAYCROSS_OUTPUT_ROOT:-outputs}
    assert printed["training"]["storage_path"] is None
    assert printed["mining"] == original["mining"]


def test_bad_config_key_exits_2_naming_the_key(capsys):
    code = cli.main(["train", "-c", RECIPE, "--set", "training.learning_rat=1e-5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "config key 'training.learning_rat'" in err and "did you mean 'learning_rate'" in err
    assert "Traceback" not in err


def test_missing_config_file(capsys, tmp_path):
    assert cli.main(["train", "-c", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


# ------------------------------------------------------------------------------ predict, evaluate
def test_predict_writes_scores_that_match_transformers(tiny_model_path, tmp_path, capsys):
    rows = pq.read_table(QUICKSTART_DATA / "train.parquet").slice(0, 6).to_pylist()
    pairs = [(r["query"], r["positive"]) for r in rows]
    source = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"query": [a for a, _ in pairs], "passage": [b for _, b in pairs]}), source)
    out = tmp_path / "scored.parquet"

    code = cli.main(["predict", "--model", str(tiny_model_path), "--input", str(source), "--output", str(out),
                     "--batch-size", "4"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 6 and summary["output_path"] == str(out.resolve())
    scored = pq.read_table(out).to_pylist()
    assert [(r["query"], r["passage"]) for r in scored] == pairs
    np.testing.assert_allclose([r["score"] for r in scored], _reference_scores(tiny_model_path, pairs), atol=1e-5)

    # Without --output: one JSON line per pair, then the summary.
    assert cli.main(["predict", "--model", str(tiny_model_path), "--input", str(source)]) == 0
    lines = capsys.readouterr().out.splitlines()
    scores = [json.loads(line)["score"] for line in lines[:6]]
    np.testing.assert_allclose(scores, _reference_scores(tiny_model_path, pairs), atol=1e-5)


def test_evaluate_reports_reranking_metrics(tiny_model_path, tmp_path, capsys):
    samples = pq.read_table(QUICKSTART_DATA / "eval.parquet").slice(0, 5).to_pylist()
    config = {
        "model": {"name_or_path": str(tiny_model_path)},
        "evaluator": {"type": "reranking", "data": {"bundled": "wordnet-mini/eval.parquet", "limit": 5},
                      "kwargs": {"name": "dev", "at_k": 10, "write_csv": False}},
        "evaluate": {"output_path": str(tmp_path / "metrics.json")},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["evaluate", "-c", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == result["metrics"]

    # Independent MRR@10: rank each query's candidates (positives included) by the transformers scores.
    reciprocal = []
    for sample in samples:
        docs = list(dict.fromkeys([*sample["positive"], *sample["documents"]]))
        scores = _reference_scores(tiny_model_path, [(sample["query"], d) for d in docs])
        order = np.argsort(-scores, kind="stable")
        ranks = [i for i, d in enumerate(order) if docs[d] in sample["positive"]]
        reciprocal.append(1 / (ranks[0] + 1) if ranks[0] < 10 else 0.0)
    assert result["metrics"]["dev_mrr@10"] == pytest.approx(np.mean(reciprocal), abs=1e-6)


# ---------------------------------------------------------------------------------- tune, quickstart
def test_tune_hands_the_validated_config_to_raycross_tune(monkeypatch, capsys):
    received = {}

    def run_sweep_from_config(config):
        received.update(config)
        return {"best_config": {"training.learning_rate": 3e-5}, "best_metric": 0.5}

    fake = types.ModuleType("raycross.tune")
    fake.run_sweep_from_config = run_sweep_from_config
    monkeypatch.setitem(sys.modules, "raycross.tune", fake)
    sweep = str(REPO / "jobs" / "configs" / "hpo_sweep.yaml")
    assert cli.main(["tune", "-c", sweep, "--num-samples", "3", "--max-steps", "4"]) == 0
    assert received["tune"]["num_samples"] == 3 and received["training"]["max_steps"] == 4
    assert received["tune"]["metric"] == "eval_wordnet-dev_ndcg@10"
    assert json.loads(capsys.readouterr().out)["best_metric"] == 0.5


def test_quickstart_flags_follow_run_quickstart(monkeypatch, tmp_path, capsys):
    from raycross import quickstart

    received = {}
    real = quickstart.run_quickstart

    def fake(**kwargs):
        received.update(kwargs)
        kwargs["log"]("[1/5] data: ...")
        return {"model_path": str(tmp_path / "model")}

    fake.__signature__ = inspect.signature(real)
    monkeypatch.setattr(quickstart, "run_quickstart", fake)
    code = cli.main(["quickstart", "--output-dir", str(tmp_path), "--max-steps", "5", "--learning-rate", "1e-4"])
    assert code == 0
    assert received["output_dir"] == str(tmp_path)
    assert received["max_steps"] == 5 and isinstance(received["max_steps"], int)
    assert received["learning_rate"] == 1e-4
    captured = capsys.readouterr()
    # progress lines and the summary table on stderr; stdout holds only the result (for scripts)
    assert captured.err.startswith("[1/5] data: ...")
    assert "raycross quickstart: summary" in captured.err and "model" in captured.err
    assert json.loads(captured.out)["model_path"] == str(tmp_path / "model")
    assert cli.main(["quickstart", "--output-dir", str(tmp_path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "[1/5]" not in captured.err and "raycross quickstart: summary" in captured.err


def test_exit_codes_scripts_can_rely_on(monkeypatch, tmp_path, capsys):
    from raycross import console, quickstart

    def failing(**kwargs):
        raise RuntimeError("disk full")

    def invalid(**kwargs):
        raise ValueError("num_negatives: expected an integer >= 1, found 0")

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    for fake, code, message in ((failing, console.EXIT_FAILED, "failed: RuntimeError: disk full"),
                                (invalid, console.EXIT_USAGE, "error: num_negatives"),
                                (interrupted, console.EXIT_INTERRUPTED, "interrupted")):
        fake.__signature__ = inspect.signature(quickstart.run_quickstart)
        monkeypatch.setattr(quickstart, "run_quickstart", fake)
        assert cli.main(["quickstart", "--output-dir", str(tmp_path)]) == code
        assert message in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "missing.yaml")]) == console.EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        cli.main(["quickstart", "--quiet", "--verbose"])
    assert exc.value.code == console.EXIT_USAGE


def test_python_dash_m_raycross_runs_the_cli():
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "raycross", "--version"], capture_output=True, text=True,
                            env={**os.environ}, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("raycross ")


def test_console_hides_loader_noise_unless_verbose():
    import logging

    from raycross import console

    console.configure_output("normal")
    assert not logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
    assert logging.getLogger("raycross").isEnabledFor(logging.INFO)
    console.configure_output("verbose")
    assert logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
    console.configure_output("quiet")
    assert not logging.getLogger("raycross").isEnabledFor(logging.INFO)
    console.configure_output("normal")


# ----------------------------------------------------------------------------------- teacher scores
def _raw_logits(model_dir: Path, pairs: list[tuple[str, str]]) -> list[float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return [model(**tokenizer(a, b, return_tensors="pt")).logits[0, 0].item() for a, b in pairs]


def test_teacher_scores_every_document_of_each_row(tiny_model_path, tmp_path):
    import datasets

    rows = {"query": ["the dog", "a cat"], "positive": ["a dog runs", "a cat sits"],
            "negative_1": ["a red car", "water"], "negative_2": ["the city", "an old man"]}
    out = add_teacher_scores({"model": str(tiny_model_path), "batch_size": 3, "execution": "local"},
                             datasets.Dataset.from_dict(rows), tmp_path / "tuples")
    labeled = pq.read_table(out).to_pylist()
    assert list(labeled[0]) == ["query", "positive", "negative_1", "negative_2", "scores"]
    for i, query in enumerate(rows["query"]):
        docs = [rows[c][i] for c in ("positive", "negative_1", "negative_2")]
        np.testing.assert_allclose(labeled[i]["scores"], _raw_logits(tiny_model_path, [(query, d) for d in docs]),
                                   atol=1e-5)

    # A column of document lists (listwise data) gets one score per document, in order.
    lists = datasets.Dataset.from_dict({"query": ["the dog"], "docs": [["a dog runs", "water", "the city"]]})
    out = add_teacher_scores({"model": str(tiny_model_path), "apply_activation": True, "label_column": "labels",
                              "execution": "local", "output_path": str(tmp_path / "lists")}, lists)
    assert out == str(tmp_path / "lists")
    labeled = pq.read_table(out).to_pylist()
    expected = 1 / (1 + np.exp(-np.array(_raw_logits(tiny_model_path, [("the dog", d) for d in lists[0]["docs"]]))))
    np.testing.assert_allclose(labeled[0]["labels"], expected, atol=1e-5)


def test_teacher_refuses_data_that_already_has_labels(tiny_model_path, tmp_path):
    import datasets

    from raycross.config import ConfigError

    data = datasets.Dataset.from_dict({"query": ["q"], "passage": ["p"], "label": [1]})
    with pytest.raises(ConfigError, match="already has a label column 'label'"):
        add_teacher_scores({"model": str(tiny_model_path)}, data, tmp_path / "scores")
    assert not (tmp_path / "scores").exists()
    # ... unless told to replace them (mined labeled lists carry 1/0 labels the teacher's scores replace)
    out = add_teacher_scores({"model": str(tiny_model_path), "replace_labels": True, "execution": "local"}, data,
                             tmp_path / "scores")
    table = pq.read_table(out)
    assert table.column_names == ["query", "passage", "scores"]
    np.testing.assert_allclose(table["scores"].to_pylist(), _raw_logits(tiny_model_path, [("q", "p")]), atol=1e-5)


@pytest.mark.parametrize(("teacher", "key", "message"), [
    ({"model": "m", "execution": "cluster"}, "teacher.execution", "expected one of auto/ray/local, found 'cluster'"),
    ({"model": "m", "replace_labels": "yes"}, "teacher.replace_labels", "true or false"),
    ({"model": "m", "chunk_rows": 0}, "teacher.chunk_rows", ""),
    ({"model": "m", "num_workers": -1}, "teacher.num_workers", ""),
    ({"model": "m", "use_gpu": "gpu"}, "teacher.use_gpu", ""),
    ({"model": "m", "output_path": 3}, "teacher.output_path", "a directory path"),
    ({"model": "m"}, "teacher.output_path", "required for `raycross score`"),
])
def test_score_config_errors_name_the_key(teacher, key, message):
    from raycross.config import ConfigError, parse_config

    config = {"data": {"train": {"bundled": "wordnet-mini/train.parquet"}}, "teacher": teacher}
    with pytest.raises(ConfigError) as info:
        parse_config(config, "score")
    assert info.value.key == key
    assert message in str(info.value)


def _score_config(tmp_path: Path, teacher: Path) -> Path:
    rows = pa.table({"query": ["the dog", "a cat", "water"],
                     "docs": [["a dog runs", "the city"], ["a cat sits", "water", "an old man"], ["rain"]],
                     "labels": [[1.0, 0.0], [1.0, 0.0, 0.0], [1.0]]})
    pq.write_table(rows, tmp_path / "lists.parquet")
    config = {"data": {"train": {"path": str(tmp_path / "lists.parquet")}},
              "teacher": {"model": str(teacher), "batch_size": 2, "chunk_rows": 2, "replace_labels": True,
                          "execution": "local"}}
    (tmp_path / "score.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "score.yaml"


def test_score_command_writes_resumable_teacher_labels(tiny_model_path, tmp_path, capsys):
    config = _score_config(tmp_path, tiny_model_path)
    out = tmp_path / "scored"
    assert cli.main(["score", "-c", str(config), "--output", str(out), "--json"]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert (result["command"], result["output_path"], result["rows"], result["files"]) == ("score", str(out), 3, 2)
    assert result["columns"] == ["query", "docs", "scores"]
    scored = pq.read_table(out).to_pylist()
    for row in scored:
        np.testing.assert_allclose(row["scores"], _raw_logits(tiny_model_path, [(row["query"], d) for d in row["docs"]]),
                                   atol=1e-5)
    # a rerun skips the scored chunks: remove one part, only that one is scored again
    first = sorted(out.glob("part-*.parquet"))[0]
    kept = sorted(out.glob("part-*.parquet"))[1].stat().st_mtime_ns
    first.unlink()
    assert cli.main(["score", "-c", str(config), "--output", str(out), "--json"]) == 0
    capsys.readouterr()
    assert first.is_file() and sorted(out.glob("part-*.parquet"))[1].stat().st_mtime_ns == kept
    assert pq.read_table(out).to_pylist() == scored
    # the student trains on the directory with a listwise distillation loss
    from raycross import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from raycross.losses import ListNetLoss

    student = CrossEncoder(str(tiny_model_path))
    args = CrossEncoderTrainingArguments(str(tmp_path / "student"), max_steps=2, per_device_train_batch_size=2,
                                         save_strategy="no", report_to=[], disable_tqdm=True)
    result = CrossEncoderTrainer(student, args, train_dataset=str(out), loss=ListNetLoss(student)).train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)


def test_train_config_teacher_section_scores_into_the_run(tiny_model_path, tmp_path):
    from raycross.config import parse_config
    from raycross.config.prepare import prepare_training_data

    config = yaml.safe_load(_score_config(tmp_path, tiny_model_path).read_text())
    config.update(model={"name_or_path": str(tiny_model_path)}, loss={"name": "ListNetLoss"},
                  training={"output_dir": str(tmp_path / "run"), "max_steps": 1})
    train, eval_ = prepare_training_data(parse_config(config, "train"))
    assert train == str(tmp_path / "run" / "teacher-scores") and eval_ is None
    assert pq.read_table(train).column_names == ["query", "docs", "scores"]


# ------------------------------------------------------------------------------------------ recipes
RECIPES = {
    "reranker_bce.yaml": ("train", "evaluate"),
    "listwise_lambda.yaml": ("train", "evaluate"),
    "nli_classification.yaml": ("train", "evaluate"),
    "distill_margin_mse.yaml": ("train", "evaluate"),
    "distill_listwise.yaml": ("score", "train", "evaluate"),
    "hpo_sweep.yaml": ("tune", "train"),
    "mine_hard_negatives.yaml": ("mine",),
}


def test_every_recipe_is_listed():
    assert sorted(p.name for p in (REPO / "jobs" / "configs").glob("*.yaml")) == sorted(RECIPES)


@pytest.mark.parametrize("offline", ["1", "0"], ids=["offline", "online"])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_validate_for_their_commands(name, offline, monkeypatch, tmp_path, capsys):
    from conftest import SHARED_DATA

    if offline == "1" and name == "nli_classification.yaml" and not SHARED_DATA.is_dir():
        pytest.skip("the offline NLI recipe reads the shared SNLI data")
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("RAYCROSS_SHARED_DATA", str(SHARED_DATA))
    monkeypatch.setenv("RAYCROSS_OUTPUT_ROOT", str(tmp_path))
    (tmp_path / "reranker-bce").mkdir()  # the offline distillation teacher: the reranker recipe's output
    for command in RECIPES[name]:
        assert cli.main([command, "-c", str(REPO / "jobs" / "configs" / name), "--dry-run"]) == 0, capsys.readouterr().err
        resolved = yaml.safe_load(capsys.readouterr().out)
        if "training" in resolved:
            assert resolved["training"]["output_dir"].startswith(str(tmp_path))
