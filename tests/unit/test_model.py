"""CrossEncoder: loading rules, predict/rank semantics, saving and interop with transformers / sentence-transformers."""

from __future__ import annotations

import json
import logging
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from raycross import CrossEncoder


def reference_scores(model: CrossEncoder, pairs, activation=None) -> np.ndarray:
    """Score pairs one at a time, unsorted and unbatched, straight through transformers."""
    hf, tok = model.hf_model, model.tokenizer
    activation = activation or model.activation_fn
    out = []
    with torch.no_grad():
        for a, b in pairs:
            enc = tok(a, b, truncation="longest_first", max_length=model.max_length, return_tensors="pt")
            logits = hf(**enc).logits.float()
            out.append(activation(logits)[0].numpy())
    out = np.stack(out)
    return out[:, 0] if out.shape[1] == 1 else out


@pytest.fixture(scope="module")
def real_pairs(shared_data):
    import pyarrow.parquet as pq

    table = pq.read_table(shared_data / "wordnet-context2gloss" / "train-pairs.parquet").slice(0, 700).to_pylist()
    snli = pq.read_table(shared_data / "snli" / "test.parquet").slice(0, 300).to_pylist()
    return [(r["query"], r["passage"]) for r in table] + [(r["premise"], r["hypothesis"]) for r in snli]


def test_predict_matches_unbatched_reference_on_real_pairs(tiny_model, real_pairs):
    assert len(real_pairs) == 1000
    scores = tiny_model.predict(real_pairs, batch_size=37, show_progress_bar=False)
    assert scores.shape == (1000,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, reference_scores(tiny_model, real_pairs), atol=1e-5)
    # Permuting the input permutes the output: the length sort is undone exactly.
    perm = np.random.default_rng(0).permutation(len(real_pairs))
    permuted = tiny_model.predict([real_pairs[i] for i in perm], batch_size=64)
    np.testing.assert_allclose(permuted, scores[perm], atol=1e-6)


def test_predict_minilm_real_pairs(minilm_dir, real_pairs):
    model = CrossEncoder(str(minilm_dir), device="cpu")
    pairs = real_pairs[:300] + real_pairs[-100:]
    scores = model.predict(pairs, batch_size=32)
    np.testing.assert_allclose(scores, reference_scores(model, pairs), atol=1e-5)
    assert model.max_length == 256  # from sentence_bert_config.json


def test_output_shapes_and_types(tiny_model, tiny_model_path_3labels):
    pairs = [("a man plays", "a dog runs"), ("the cat", "a cat sits outside"), ("x", "y")]
    assert isinstance(tiny_model.predict(("a", "b")), np.floating)
    assert tiny_model.predict([]).shape == (0,)
    tensor = tiny_model.predict(pairs, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (3,)
    as_list = tiny_model.predict(pairs, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 3

    nli = CrossEncoder(str(tiny_model_path_3labels), device="cpu")
    assert nli.num_labels == 3 and isinstance(nli.activation_fn, nn.Identity)
    logits = nli.predict(pairs)
    assert logits.shape == (3, 3)
    probs = nli.predict(pairs, apply_softmax=True)
    np.testing.assert_allclose(probs, torch.softmax(torch.tensor(logits), 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert nli.predict(("a", "b")).shape == (3,)
    assert nli.predict([]).shape == (0, 3)


def test_activation_override_and_default(tiny_model):
    pairs = [("a man plays", "a dog runs"), ("the cat", "a cat sits outside")]
    logits = tiny_model.predict(pairs, activation_fn=nn.Identity())
    probs = tiny_model.predict(pairs)
    assert isinstance(tiny_model.activation_fn, nn.Sigmoid)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)


def test_num_labels_rules(tiny_encoder_path, tiny_model_path_3labels):
    bare = CrossEncoder(str(tiny_encoder_path), device="cpu")
    assert bare.num_labels == 1 and isinstance(bare.activation_fn, nn.Sigmoid)
    kept = CrossEncoder(str(tiny_model_path_3labels), device="cpu")
    assert kept.num_labels == 3
    resized = CrossEncoder(str(tiny_model_path_3labels), num_labels=2, device="cpu")
    assert resized.num_labels == 2 and resized.hf_model.classifier.out_features == 2
    # The encoder body is kept when the head is replaced.
    torch.testing.assert_close(resized.hf_model.bert.embeddings.word_embeddings.weight,
                               kept.hf_model.bert.embeddings.word_embeddings.weight)


def test_max_length_default_and_truncation(tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    assert model.max_length == 128  # min(tokenizer 128, max positions 128)
    short = CrossEncoder(str(tiny_model_path), max_length=12, device="cpu")
    features = short.preprocess([("one two three four five six seven eight nine", "a b c d e f g h i j k l")])
    assert features["input_ids"].shape[1] == 12
    # longest_first trims the longer text first: both segments keep tokens.
    types_ = features["token_type_ids"][0].tolist()
    assert types_.count(0) >= 4 and types_.count(1) >= 4


def test_dtype_via_model_kwargs(tiny_model_path):
    model = CrossEncoder(str(tiny_model_path), model_kwargs={"torch_dtype": torch.bfloat16}, device="cpu")
    assert model.dtype == torch.bfloat16
    scores = model.predict([("a man", "a dog")] * 3)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()


def test_round_trip_and_transformers_interop(tiny_model_path, tmp_path):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    model.activation_fn = nn.Identity()
    out = tmp_path / "saved"
    model.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    assert config["sentence_transformers"]["activation_fn"] == "torch.nn.modules.linear.Identity"
    assert "version" in config["sentence_transformers"]
    st_config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st_config["model_type"] == "CrossEncoder" and "__version__" in st_config
    assert st_config["activation_fn"] == "torch.nn.modules.linear.Identity"
    assert (out / "model.safetensors").is_file()

    pairs = [("a man plays", "a dog runs"), ("the cat", "a cat sits outside"), ("what is python", "a program")]
    loaded = CrossEncoder(str(out), device="cpu")
    assert isinstance(loaded.activation_fn, nn.Identity)
    np.testing.assert_allclose(loaded.predict(pairs), model.predict(pairs), atol=1e-6)

    hf = AutoModelForSequenceClassification.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = hf(**tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(logits[:, 0].numpy(), model.predict(pairs), atol=1e-6)


def _write_st_layout(src, dst, where: str, activation: str) -> None:
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    if where == "config.json":
        config["sentence_transformers"] = {"activation_fn": activation, "version": "4.1.0"}
        (dst / "config.json").write_text(json.dumps(config))
    else:
        (dst / "config_sentence_transformers.json").write_text(json.dumps(
            {"model_type": "CrossEncoder", "activation_fn": activation,
             "__version__": {"sentence_transformers": "5.1.0"}}))


@pytest.mark.parametrize("where", ["config.json", "config_sentence_transformers.json"])
def test_loads_sentence_transformers_layouts(tiny_model_path, tmp_path, where):
    dst = tmp_path / "st"
    _write_st_layout(tiny_model_path, dst, where, "torch.nn.modules.activation.Tanh")
    model = CrossEncoder(str(dst), device="cpu")
    assert isinstance(model.activation_fn, nn.Tanh)
    pairs = [("a man plays", "a dog runs")]
    np.testing.assert_allclose(model.predict(pairs), reference_scores(model, pairs, nn.Tanh()), atol=1e-6)


def test_untrusted_activation_falls_back_with_warning(tiny_model_path, tmp_path, caplog):
    dst = tmp_path / "custom"
    _write_st_layout(tiny_model_path, dst, "config.json", "my_custom_acts.Double")
    with caplog.at_level(logging.WARNING, logger="raycross.model"):
        model = CrossEncoder(str(dst), device="cpu")
    assert isinstance(model.activation_fn, nn.Sigmoid)
    assert "trust_remote_code" in caplog.text

    module = types.ModuleType("my_custom_acts")

    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    module.Double = Double
    sys.modules["my_custom_acts"] = module
    try:
        trusted = CrossEncoder(str(dst), device="cpu", trust_remote_code=True)
        assert type(trusted.activation_fn).__name__ == "Double"
    finally:
        del sys.modules["my_custom_acts"]


def test_sentence_transformers_loads_raycross_model_and_back(tiny_model_path, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    model.save_pretrained(tmp_path / "rc")
    pairs = [("a man plays", "a dog runs"), ("the cat", "a cat sits outside")]
    st_model = st.CrossEncoder(str(tmp_path / "rc"), device="cpu")
    np.testing.assert_allclose(st_model.predict(pairs), model.predict(pairs), atol=1e-6)
    # And a model saved by sentence-transformers (its own layout) loads in raycross.
    st_model.activation_fn = nn.Identity()
    st_model.save_pretrained(str(tmp_path / "st"))
    back = CrossEncoder(str(tmp_path / "st"), device="cpu")
    assert isinstance(back.activation_fn, nn.Identity)
    np.testing.assert_allclose(back.predict(pairs), st_model.predict(pairs), atol=1e-6)


def test_rank_single_and_multi_query(tiny_model):
    docs = ["a dog runs outside", "a man is playing", "the cat sits", "water"]
    ranking = tiny_model.rank("a man plays", docs, return_documents=True)
    scores = tiny_model.predict([("a man plays", d) for d in docs])
    assert [r["corpus_id"] for r in ranking] == list(np.argsort(-scores, kind="stable"))
    assert all(r["text"] == docs[r["corpus_id"]] for r in ranking)
    assert len(tiny_model.rank("a man plays", docs, top_k=2)) == 2
    many = tiny_model.rank(["a man plays", "a cat"], [docs, docs[:2]])
    assert [r["corpus_id"] for r in many[0]] == [r["corpus_id"] for r in ranking]
    assert many[1] == tiny_model.rank("a cat", docs[:2])
    shared = tiny_model.rank(["a man plays", "a cat"], docs, top_k=3)
    assert len(shared) == 2 and all(len(r) == 3 for r in shared)


def test_hub_id_goes_to_the_hub_and_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="model_name_or_path='raycross-test/no-such-model'"):
        CrossEncoder("raycross-test/no-such-model")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model_name_or_path": "/no/such/dir"}, ValueError, "no such directory"),
        ({"num_labels": 0}, ValueError, "num_labels"),
        ({"max_length": 0}, ValueError, "max_length"),
    ],
)
def test_bad_constructor_arguments(tiny_model_path, kwargs, error, match):
    kwargs = {"model_name_or_path": str(tiny_model_path), **kwargs}
    with pytest.raises(error, match=match):
        CrossEncoder(**kwargs)


def test_directory_without_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="config.json not found"):
        CrossEncoder(str(tmp_path))


def test_bad_pairs_and_rank_on_multilabel(tiny_model, tiny_model_path_3labels):
    with pytest.raises(TypeError, match=r"pairs\[1\]"):
        tiny_model.predict([("a", "b"), ("only one",)])
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        tiny_model.predict([("a", 3)])
    with pytest.raises(TypeError, match="single string"):
        tiny_model.predict("just text")
    with pytest.raises(ValueError, match="batch_size"):
        tiny_model.predict([("a", "b")], batch_size=0)
    nli = CrossEncoder(str(tiny_model_path_3labels), device="cpu")
    with pytest.raises(ValueError, match="num_labels=1"):
        nli.rank("q", ["a", "b"])
