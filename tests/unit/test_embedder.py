"""Embedder: pooling, normalization, the sentence-transformers layout, prompts, order of length-sorted batches."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from raycross.embedder import Embedder

TEXTS = [
    "a man is playing with a dog outside in the street",
    "water",
    "the definition of a word in a sentence",
    "two young children sit near the house and eat some food",
    "red car",
]


def reference(path, texts, pooling="mean", max_length=128, lower=False, dense=None):
    """One text at a time (no padding), straight from transformers."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tok(text.lower() if lower else text, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**enc).last_hidden_state[0]
            vec = hidden.mean(0) if pooling == "mean" else hidden[0]
            if dense is not None:
                vec = torch.tanh(dense[0] @ vec + dense[1])
            out.append((vec / vec.norm()).numpy())
    return np.stack(out)


def test_plain_encoder_mean_pooling_normalized_in_input_order(tiny_encoder_path):
    emb = Embedder(str(tiny_encoder_path), device="cpu")
    assert emb.pooling_modes == ("mean",) and not emb.has_st_layout
    got = emb.encode(TEXTS, batch_size=2)
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, reference(tiny_encoder_path, TEXTS), atol=2e-5)
    # A single string gives a vector; an empty list an empty matrix.
    np.testing.assert_allclose(emb.encode(TEXTS[1]), got[1], atol=1e-6)
    assert emb.encode([]).shape == (0, 32)


def _st_layout(src, dst, pooling_config, sbert=None, prompts=None, dense=None):
    shutil.copytree(src, dst)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (dst / "1_Pooling").mkdir()
    (dst / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    if dense is not None:
        from safetensors.torch import save_file

        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        (dst / "2_Dense").mkdir()
        (dst / "2_Dense" / "config.json").write_text(
            json.dumps(
                {
                    "in_features": 32,
                    "out_features": 8,
                    "bias": True,
                    "activation_function": "torch.nn.modules.activation.Tanh",
                }
            )
        )
        save_file(
            {"linear.weight": dense[0].contiguous(), "linear.bias": dense[1].contiguous()},
            str(dst / "2_Dense" / "model.safetensors"),
        )
    modules.append(
        {"idx": len(modules), "name": str(len(modules)), "path": "n", "type": "sentence_transformers.models.Normalize"}
    )
    (dst / "modules.json").write_text(json.dumps(modules))
    if sbert:
        (dst / "sentence_bert_config.json").write_text(json.dumps(sbert))
    if prompts:
        (dst / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return dst


def test_st_layout_cls_pooling_max_length_and_prompts(tiny_encoder_path, tmp_path):
    path = _st_layout(
        tiny_encoder_path,
        tmp_path / "st",
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
        sbert={"max_seq_length": 6, "do_lower_case": True},
        prompts={"query": "query: ", "passage": "passage: "},
    )
    emb = Embedder(str(path), device="cpu")
    assert emb.pooling_modes == ("cls",) and emb.max_length == 6 and emb.has_st_layout
    upper = [t.upper() for t in TEXTS]
    np.testing.assert_allclose(emb.encode(upper, batch_size=3), reference(path, TEXTS, "cls", max_length=6), atol=2e-5)
    # encode_query / encode_document pick the model's "query" / "passage" prompts; an explicit prompt wins.
    np.testing.assert_allclose(
        emb.encode_query(TEXTS), reference(path, ["query: " + t for t in TEXTS], "cls", 6), atol=2e-5
    )
    np.testing.assert_allclose(
        emb.encode_document(TEXTS), reference(path, ["passage: " + t for t in TEXTS], "cls", 6), atol=2e-5
    )
    np.testing.assert_allclose(emb.encode_query(TEXTS, prompt=""), reference(path, TEXTS, "cls", 6), atol=2e-5)
    with pytest.raises(ValueError, match="prompt_name='nope'"):
        emb.encode(TEXTS, prompt_name="nope")


def test_st_layout_dense_module(tiny_encoder_path, tmp_path):
    torch.manual_seed(0)
    dense = (torch.randn(8, 32), torch.randn(8))
    path = _st_layout(tiny_encoder_path, tmp_path / "dense", {"pooling_mode": "mean"}, dense=dense)
    emb = Embedder(str(path), device="cpu")
    assert emb.embedding_dim == 8
    np.testing.assert_allclose(emb.encode(TEXTS, batch_size=4), reference(path, TEXTS, dense=dense), atol=2e-5)


def test_matches_sentence_transformers_on_minilm(minilm_dir):
    st = pytest.importorskip("sentence_transformers")
    emb = Embedder(str(minilm_dir), device="cpu")
    assert emb.pooling_modes == ("mean",) and emb.max_length == 256 and emb.embedding_dim == 384
    ref = st.SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(emb.encode(TEXTS, batch_size=2), ref, atol=1e-5)


def test_errors_name_the_argument(tiny_encoder_path, tmp_path):
    with pytest.raises(ValueError, match="pooling"):
        Embedder(str(tiny_encoder_path), pooling="sum")
    with pytest.raises(ValueError, match="not a model directory"):
        Embedder(str(tmp_path / "missing"))
    bad = _st_layout(tiny_encoder_path, tmp_path / "bad", {"pooling_mode": "mean"})
    (bad / "modules.json").write_text(json.dumps([{"idx": 0, "path": "", "type": "sentence_transformers.models.LSTM"}]))
    with pytest.raises(ValueError, match="LSTM"):
        Embedder(str(bad))
    emb = Embedder(str(tiny_encoder_path), device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        emb.encode(TEXTS, batch_size=0)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        emb.encode(["ok", 3])
