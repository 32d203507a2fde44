"""raycross.config: YAML parsing, overrides, env expansion, validation errors naming the key, data loading."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycross import config as cfg
from raycross.config import ConfigError
from raycross.resources import QUICKSTART_DATA


def _train_config(**sections):
    base = {
        "model": {"name_or_path": "org/model"},
        "data": {"train": {"bundled": "wordnet-mini/train.parquet"}},
        "loss": {"name": "BinaryCrossEntropyLoss"},
        "training": {"output_dir": "out"},
    }
    base.update(sections)
    return base


def _error(config, command="train") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.validate_config(config, command)
    return info.value


# ------------------------------------------------------------------------------------------- YAML
def test_yaml_reads_exponent_floats_and_keeps_other_scalars():
    data = cfg.parse_yaml("a: 2e-5\nb: 1E3\nc: 3\nd: 1.5\ne: v1.2\nf: 1e\ng: .5\nh: -4e-2\ni: true\nj: null")
    assert data == {"a": 2e-5, "b": 1000.0, "c": 3, "d": 1.5, "e": "v1.2", "f": "1e", "g": 0.5, "h": -0.04,
                    "i": True, "j": None}
    assert isinstance(data["b"], float) and isinstance(data["c"], int)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        cfg.load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        cfg.load_yaml(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        cfg.load_yaml(broken)


# -------------------------------------------------------------------------------------- overrides
def test_overrides_parse_values_as_yaml_and_build_nested_keys():
    config = cfg.load_config({"training": {"output_dir": "o"}}, [
        "training.learning_rate=3e-5", "training.report_to=[tensorboard]", "data.train.limit=10",
        "model.name_or_path=org/m", "training.run_name=", "evaluator.kwargs.name=dev=1",
    ])
    assert config["training"] == {"output_dir": "o", "learning_rate": 3e-5, "report_to": ["tensorboard"], "run_name": None}
    assert config["data"] == {"train": {"limit": 10}}
    assert config["model"] == {"name_or_path": "org/m"}
    assert config["evaluator"]["kwargs"]["name"] == "dev=1"  # only the first '=' splits


def test_override_into_lists_and_model_strings():
    config = {"evaluator": [{"type": "a"}, {"type": "b"}], "mining": {"model": "org/embedder"}}
    cfg.set_dotted(config, "evaluator.1.type", "c")
    cfg.set_dotted(config, "mining.model.offline", "builtin:minilm")
    assert config["evaluator"] == [{"type": "a"}, {"type": "c"}]
    assert config["mining"]["model"] == {"name_or_path": "org/embedder", "offline": "builtin:minilm"}
    with pytest.raises(ConfigError, match="list index"):
        cfg.set_dotted(config, "evaluator.5.type", "x")
    with pytest.raises(ConfigError, match="not a mapping"):
        cfg.set_dotted({"a": 3}, "a.b", 1)


@pytest.mark.parametrize("item", ["no_equals_sign", "=3", "a..b=1", ".a=1"])
def test_bad_override_syntax(item):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        cfg.parse_override(item)


def test_get_dotted():
    config = {"a": {"b": [{"c": 1}]}}
    assert cfg.get_dotted(config, "a.b.0.c") == 1
    assert cfg.get_dotted(config, "a.x", "default") == "default"


# ----------------------------------------------------------------------------------- environment
def test_env_expansion(monkeypatch):
    monkeypatch.setenv("RC_ROOT", "/data/runs")
    monkeypatch.setenv("RC_WORKERS", "4")
    monkeypatch.delenv("RC_UNSET", raising=False)
    config = cfg.expand_env({
        "out": "${RC_ROOT}/bce", "workers": "${RC_WORKERS}", "storage": "${RC_UNSET:-null}",
        "lr": "${RC_UNSET:-2e-5}", "items": ["${RC_UNSET:-x}-y"], "plain": "no refs", "num": 3,
    })
    assert config == {"out": "/data/runs/bce", "workers": 4, "storage": None, "lr": 2e-5, "items": ["x-y"],
                      "plain": "no refs", "num": 3}
    with pytest.raises(ConfigError) as info:
        cfg.expand_env({"training": {"output_dir": "${RC_UNSET}/x"}})
    assert info.value.key == "training.output_dir" and "RC_UNSET" in str(info.value)


def test_hub_offline_switches_sources_and_models(monkeypatch):
    spec = {"hub": "org/data", "offline": {"bundled": "wordnet-mini/train.parquet"}}
    ref = {"name_or_path": "org/model", "offline": "/some/local/dir"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cfg.resolve_source(spec) == {"bundled": "wordnet-mini/train.parquet"}
    assert cfg.resolve_model_ref(ref) == "/some/local/dir"
    # A local primary is never swapped for the offline fallback.
    assert cfg.resolve_model_ref({"name_or_path": "./runs/mine", "offline": "x/y"}) == "./runs/mine"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert cfg.resolve_source(spec) == spec
    assert cfg.resolve_model_ref(ref) == "org/model"


# ------------------------------------------------------------------------------------- validation
def test_valid_train_config_passes():
    cfg.validate_config(_train_config(), "train")


def test_unknown_top_level_section_names_close_match():
    error = _error({**_train_config(), "trainig": {}})
    assert error.key == "trainig"
    assert "did you mean 'training'" in str(error)


def test_missing_required_section():
    config = _train_config()
    del config["loss"]
    assert _error(config).key == "loss"


def test_unknown_training_key_lists_close_matches():
    error = _error(_train_config(training={"output_dir": "o", "learning_rat": 1e-5}))
    assert error.key == "training.learning_rat"
    assert "did you mean 'learning_rate'" in str(error)
    assert "valid keys:" in str(error) and "per_device_train_batch_size" in str(error)


@pytest.mark.parametrize(
    ("training", "key"),
    [
        ({"output_dir": "o", "learning_rate": -1.0}, "training.learning_rate"),
        ({"output_dir": "o", "num_workers": -2}, "training.num_workers"),
        ({"output_dir": "o", "eval_strategy": "sometimes"}, "training.eval_strategy"),
        ({"output_dir": "o", "per_device_train_batch_size": 0}, "training.per_device_train_batch_size"),
        ({}, "training.output_dir"),
    ],
)
def test_bad_training_values_name_the_key(training, key):
    assert _error(_train_config(training=training)).key == key


def test_training_args_are_built_from_the_section():
    args = cfg.build_training_args({"output_dir": "o", "max_steps": 7, "learning_rate": 3e-5, "eval_strategy": "no"})
    assert (args.output_dir, args.max_steps, args.learning_rate, str(args.eval_strategy)) == ("o", 7, 3e-5, "no")


def test_loss_validation():
    error = _error(_train_config(loss={"name": "BinaryCrossEntropy"}))
    assert error.key == "loss.name" and "did you mean 'BinaryCrossEntropyLoss'" in str(error)
    error = _error(_train_config(loss={"name": "BinaryCrossEntropyLoss", "kwargs": {"pos_wieght": 5}}))
    assert error.key == "loss.kwargs.pos_wieght" and "pos_weight" in str(error)
    # **kwargs forwarded to torch.nn.BCEWithLogitsLoss: its arguments are valid.
    cfg.validate_config(_train_config(loss={"name": "BinaryCrossEntropyLoss", "kwargs": {"reduction": "sum"}}), "train")
    cfg.validate_config(_train_config(loss={"name": "LambdaLoss", "kwargs": {
        "weighting_scheme": {"name": "NDCGLoss2PPScheme", "kwargs": {"mu": 5.0}}, "k": 10,
        "activation_fn": "torch.nn.Identity"}}), "train")
    error = _error(_train_config(loss={"name": "LambdaLoss", "kwargs": {"weighting_scheme": "NDCGLoss3Scheme"}}))
    assert error.key == "loss.kwargs.weighting_scheme"
    error = _error(_train_config(loss={"name": "LambdaLoss", "kwargs": {"activation_fn": "os.system"}}))
    assert error.key == "loss.kwargs.activation_fn" and "only torch" in str(error)
    error = _error(_train_config(loss={"kwargs": {}}))
    assert error.key == "loss.name"


def test_named_losses_for_named_datasets():
    config = _train_config(
        data={"train": {"a": {"bundled": "wordnet-mini/train.parquet"}, "b": {"bundled": "wordnet-mini/train.parquet"}}},
        loss={"a": {"name": "BinaryCrossEntropyLoss"}, "b": {"name": "MultipleNegativesRankingLoss"}},
    )
    cfg.validate_config(config, "train")
    config["loss"]["b"] = {"name": "NoSuchLoss"}
    assert _error(config).key == "loss.b.name"


def test_evaluator_validation():
    data = {"bundled": "wordnet-mini/eval.parquet"}
    cfg.validate_config(_train_config(evaluator={"type": "reranking", "data": data, "kwargs": {"at_k": 5}}), "train")
    cfg.validate_config(_train_config(evaluator=[{"type": "CrossEncoderRerankingEvaluator", "data": data}]), "train")
    error = _error(_train_config(evaluator={"type": "ranking", "data": data}))
    assert error.key == "evaluator.type" and "reranking" in str(error)
    error = _error(_train_config(evaluator={"type": "reranking", "data": data, "kwargs": {"at_kk": 5}}))
    assert error.key == "evaluator.kwargs.at_kk" and "at_k" in str(error)
    assert _error(_train_config(evaluator={"type": "reranking"})).key == "evaluator.data"
    error = _error(_train_config(evaluator=[{"type": "reranking", "data": data}, {"type": "correlation", "data": {}}]))
    assert error.key == "evaluator.1.data"
    # The pairs/labels come from the data: they are not kwargs.
    error = _error(_train_config(evaluator={"type": "classification", "data": data, "kwargs": {"labels": [1]}}))
    assert error.key == "evaluator.kwargs.labels"


def test_data_source_validation(tmp_path):
    assert _error(_train_config(data={"train": {"path": str(tmp_path / "missing.parquet")}})).key == "data.train.path"
    error = _error(_train_config(data={"train": {"bundled": "wordnet-mini/train.parquet", "path": "x.parquet"}}))
    assert error.key == "data.train" and "exactly one" in str(error)
    assert _error(_train_config(data={"train": "train.parquet"})).key == "data.train"
    assert _error(_train_config(data={"train": {"bundled": "nope/x.parquet"}})).key == "data.train.bundled"
    error = _error(_train_config(data={"train": {"bundled": "wordnet-mini/train.parquet", "limt": 3}}))
    assert error.key == "data.train.limt" and "did you mean 'limit'" in str(error)
    error = _error(_train_config(data={"train": {"bundled": "wordnet-mini/train.parquet", "split": "dev"}}))
    assert error.key == "data.train.split"
    assert _error(_train_config(data={"train": {"bundled": "wordnet-mini/train.parquet", "limit": 0}})).key == "data.train.limit"
    assert _error(_train_config(data={"trian": {}})).key == "data.trian"
    assert _error(_train_config(data={"eval": {"bundled": "wordnet-mini/eval.parquet"}})).key == "data.train"
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert _error(_train_config(data={"train": {"path": str(notes)}})).key == "data.train.path"


def test_hub_source_with_offline_fallback_checks_only_the_used_files(monkeypatch, tmp_path):
    spec = {"hub": "org/data", "offline": {"path": str(tmp_path / "missing.parquet")}}
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    cfg.validate_source(spec, "data.train")  # online: the fallback is not used, so not checked
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as info:
        cfg.validate_source(spec, "data.train")
    assert info.value.key == "data.train.offline.path"


def test_model_validation(tmp_path):
    error = _error(_train_config(model={"name_or_path": "org/m", "max_lenght": 10}))
    assert error.key == "model.max_lenght" and "max_length" in str(error)
    assert _error(_train_config(model={"name_or_path": "org/m", "num_labels": 0})).key == "model.num_labels"
    assert _error(_train_config(model={"name_or_path": str(tmp_path / "absent")})).key == "model.name_or_path"
    assert _error(_train_config(model={"name_or_path": "builtin:minilm2"})).key == "model.name_or_path"
    assert _error(_train_config(model={"num_labels": 1})).key == "model.name_or_path"


def test_mining_validation():
    pytest.importorskip("raycross.mining")
    mining = {"model": "org/embedder", "num_negatives": 3, "output_format": "labeled-pair"}
    cfg.validate_config(_train_config(mining=mining), "train")
    error = _error(_train_config(mining={**mining, "num_negativs": 3}))
    assert error.key == "mining.num_negativs" and "num_negatives" in str(error)
    assert _error(_train_config(mining={**mining, "num_negatives": 0})).key == "mining.num_negatives"
    assert _error(_train_config(mining={**mining, "output_format": "pairs"})).key == "mining.output_format"
    assert _error(_train_config(mining={"num_negatives": 3})).key == "mining.model"
    mine_config = {"data": {"train": {"bundled": "wordnet-mini/train.parquet"}}, "mining": mining}
    assert _error(mine_config, "mine").key == "mining.output_path"
    mine_config["mining"] = {**mining, "output_path": "mined.parquet"}  # a directory is expected
    assert _error(mine_config, "mine").key == "mining.output_path"
    mine_config["mining"] = {**mining, "output_path": "mined"}
    cfg.validate_config(mine_config, "mine")


def test_teacher_and_command_sections():
    assert _error(_train_config(teacher={"batch_size": 8})).key == "teacher.model"
    assert _error(_train_config(teacher={"model": "org/t", "batchsize": 8})).key == "teacher.batchsize"
    predict = {"model": {"name_or_path": "org/m"}, "data": {"input": {"bundled": "wordnet-mini/train.parquet"}}}
    cfg.validate_config({**predict, "predict": {"batch_size": 8, "output_path": "s.parquet"}}, "predict")
    assert _error({**predict, "predict": {"batch_size": 0}}, "predict").key == "predict.batch_size"
    assert _error({**predict, "predict": {"outptu_path": "x"}}, "predict").key == "predict.outptu_path"
    assert _error({**predict, "predict": {"output_path": "scores.txt"}}, "predict").key == "predict.output_path"
    assert _error({"model": {"name_or_path": "org/m"}}, "evaluate").key == "evaluator"


def test_sections_other_commands_use_are_ignored():
    # A train recipe evaluates with `raycross evaluate` even though its training section is for training.
    config = _train_config(evaluator={"type": "reranking", "data": {"bundled": "wordnet-mini/eval.parquet"}},
                           training={"output_dir": "o", "not_a_field": 1})
    cfg.validate_config(config, "evaluate")
    assert _error(config, "train").key == "training.not_a_field"


# ---------------------------------------------------------------------------------- data loading
def test_load_source_matches_pyarrow_reading():
    expected = pq.read_table(QUICKSTART_DATA / "train.parquet").to_pylist()
    ds = cfg.load_source({"bundled": "wordnet-mini/train.parquet", "limit": 25,
                          "rename": {"positive": "passage"}, "columns": ["passage", "query"]}, "data.train")
    assert ds.column_names == ["passage", "query"]
    assert ds.to_list() == [{"passage": r["positive"], "query": r["query"]} for r in expected[:25]]


def test_load_source_shuffle_is_seeded_subset():
    spec = {"bundled": "wordnet-mini/train.parquet", "limit": 30, "shuffle": True, "seed": 3}
    first = cfg.load_source(spec, "data.train").to_list()
    again = cfg.load_source(spec, "data.train").to_list()
    everything = pq.read_table(QUICKSTART_DATA / "train.parquet").to_pylist()
    assert first == again and len(first) == 30
    assert first != everything[:30]
    assert all(row in everything for row in first)


def test_load_source_files_label_map_and_errors(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": lab}
            for i, lab in enumerate(["entailment", "neutral", "contradiction", "neutral"])]
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), tmp_path / "b.parquet")
    label_map = {"entailment": 0, "neutral": 1, "contradiction": 2}
    ds = cfg.load_source({"path": str(tmp_path), "label_map": label_map}, "data.train")  # a directory
    assert ds["label"] == [label_map[r["label"]] for r in rows]
    assert ds["premise"] == [r["premise"] for r in rows]

    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = cfg.load_source({"path": str(jsonl), "limit": 3}, "data.eval")
    assert ds.to_list() == rows[:3]

    with pytest.raises(ConfigError) as info:
        cfg.load_source({"path": str(jsonl), "label_map": {"entailment": 0}}, "data.train")
    assert info.value.key == "data.train.label_map" and "neutral" in str(info.value)
    with pytest.raises(ConfigError) as info:
        cfg.load_source({"path": str(jsonl), "columns": ["premise", "answer"]}, "data.train")
    assert info.value.key == "data.train.columns" and "answer" in str(info.value)


def test_hub_source_offline_without_fallback_names_the_key(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as info:
        cfg.load_source({"hub": "raycross-test/definitely-not-cached"}, "data.train")
    assert info.value.key == "data.train.hub" and "offline" in str(info.value)
