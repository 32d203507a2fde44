"""Causal-LM rerankers: loading, scoring, prompts, chat templates, saving, and parity with sentence-transformers 6.2.

Tiny Qwen3 and Llama models with a BPE tokenizer trained in the test (tests/conftest.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from raycross import CrossEncoder
from raycross.evaluation import CrossEncoderRerankingEvaluator
from tests.conftest import RERANK_CHAT_TEMPLATE, make_tiny_causal_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAIRS = [
    ("the man", "a dog"),
    ("what is a cat", "an animal that people keep in the house " * 3),
    ("who", "is it"),
    ("yes the", "no more words here for you"),
]
ATOL = 1e-5


def st_cross_encoder(path, **kwargs):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    return STCrossEncoder(str(path), device="cpu", **kwargs)


def logits(model, pairs=PAIRS, **kwargs):
    return np.asarray(model.predict(pairs, activation_fn=nn.Identity(), **kwargs))


@pytest.mark.parametrize("fixture", ["tiny_causal_path", "tiny_llama_path"])
def test_loads_causal_lm_as_reranker(fixture, request):
    path = request.getfixturevalue(fixture)
    model = CrossEncoder(str(path), device="cpu")
    tokenizer = model.tokenizer
    assert model.is_causal and model.num_labels == 1
    assert type(model.hf_model).__name__.endswith("ForCausalLM")  # never a fresh classification head
    assert tokenizer.padding_side == "left"
    assert model.score_head.true_token_id == tokenizer.convert_tokens_to_ids("yes")
    assert model.score_head.false_token_id == tokenizer.convert_tokens_to_ids("no")
    features = model.preprocess(PAIRS)
    assert bool(features["attention_mask"][:, -1].all()) and not bool(features["attention_mask"][:, 0].all())
    # the score is logit(yes) - logit(no) at the last position of the full LM
    with torch.no_grad():
        full = model.hf_model(**features).logits[:, -1]
    expected = full[:, model.score_head.true_token_id] - full[:, model.score_head.false_token_id]
    torch.testing.assert_close(model(features)[:, 0], expected, atol=ATOL, rtol=0)
    assert isinstance(model.predict(PAIRS[0]), np.floating)


@pytest.mark.parametrize("fixture", ["tiny_causal_path", "tiny_llama_path"])
def test_scores_match_sentence_transformers(fixture, request):
    path = request.getfixturevalue(fixture)
    ours, theirs = CrossEncoder(str(path), device="cpu"), st_cross_encoder(path)
    np.testing.assert_allclose(logits(ours), logits(theirs), atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=ATOL, rtol=0)  # Sigmoid default
    ours_ranked, theirs_ranked = (m.rank("the man", ["a dog", "yes", "no"]) for m in (ours, theirs))
    assert [r["corpus_id"] for r in ours_ranked] == [r["corpus_id"] for r in theirs_ranked]
    assert [r["score"] for r in ours_ranked] == pytest.approx([r["score"] for r in theirs_ranked], abs=ATOL)


def test_save_load_round_trip_both_ways(tiny_causal_path, tmp_path):
    prompts = {"web": "Judge the document: ", "short": "J: "}
    model = CrossEncoder(str(tiny_causal_path), device="cpu", prompts=prompts, default_prompt_name="web",
                         score_tokens=("yes", None))
    expected = logits(model)
    model.save_pretrained(tmp_path / "ours")
    modules = json.loads((tmp_path / "ours" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "LogitScore"]

    reloaded = CrossEncoder(str(tmp_path / "ours"), device="cpu")
    assert reloaded.prompts == prompts and reloaded.default_prompt_name == "web"
    assert reloaded.score_head.false_token_id is None
    np.testing.assert_allclose(logits(reloaded), expected, atol=ATOL, rtol=0)

    theirs = st_cross_encoder(tmp_path / "ours")  # sentence-transformers 6.2 loads the raycross save
    assert theirs.prompts == prompts and theirs.default_prompt_name == "web" and theirs[1].false_token_id is None
    np.testing.assert_allclose(logits(theirs), expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits(theirs, prompt_name="short"), logits(model, prompt_name="short"), atol=ATOL, rtol=0)

    theirs.save(str(tmp_path / "theirs"))  # and raycross loads the sentence-transformers save
    back = CrossEncoder(str(tmp_path / "theirs"), device="cpu")
    assert back.is_causal and back.prompts == prompts and back.score_head.false_token_id is None
    np.testing.assert_allclose(logits(back), expected, atol=ATOL, rtol=0)


def test_prompts_resolve_like_sentence_transformers(tiny_causal_path):
    model = CrossEncoder(str(tiny_causal_path), device="cpu", prompts={"q": "Query: "}, default_prompt_name="q")
    plain = CrossEncoder(str(tiny_causal_path), device="cpu")
    prefixed = [("Query: " + a, b) for a, b in PAIRS]
    np.testing.assert_allclose(logits(model), logits(plain, prefixed), atol=ATOL, rtol=0)  # default prompt
    np.testing.assert_allclose(logits(model, prompt=""), logits(plain), atol=ATOL, rtol=0)  # explicit empty prompt
    np.testing.assert_allclose(logits(model, prompt="X "), logits(plain, [("X " + a, b) for a, b in PAIRS]), atol=ATOL)
    np.testing.assert_allclose(logits(model), logits(st_cross_encoder(tiny_causal_path, prompts={"q": "Query: "},
                                                                        default_prompt_name="q")), atol=ATOL, rtol=0)
    ranked = model.rank("the man", ["a dog", "yes"], prompt_name="q")
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-logits(plain, [("Query: the man", "a dog"),
                                                                              ("Query: the man", "yes")])))


def test_chat_template_matches_sentence_transformers(tmp_path):
    path = make_tiny_causal_model(tmp_path / "chat", chat_template=RERANK_CHAT_TEMPLATE, max_position_embeddings=64)
    long_pairs = PAIRS + [("a man", "the dog runs in the street " * 20)]  # truncated: the template tail is restored
    prompts = {"judge": "say if the document answers"}
    ours = CrossEncoder(str(path), device="cpu", prompts=prompts)
    theirs = st_cross_encoder(path, prompts=prompts)
    assert ours.chat_template == RERANK_CHAT_TEMPLATE
    for kwargs in ({}, {"prompt_name": "judge"}):
        np.testing.assert_allclose(logits(ours, long_pairs, **kwargs), logits(theirs, long_pairs, **kwargs),
                                   atol=ATOL, rtol=0)
    ids = ours.preprocess(long_pairs[-1:])["input_ids"][0].tolist()
    assert len(ids) == 64 and ids[-6:] == ours.tokenizer("<|im_start|>relevant yes or no",
                                                         add_special_tokens=False)["input_ids"][-6:]
    ours.save_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(logits(st_cross_encoder(tmp_path / "saved"), long_pairs), logits(ours, long_pairs),
                               atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits(CrossEncoder(str(tmp_path / "saved"), device="cpu"), long_pairs),
                               logits(ours, long_pairs), atol=ATOL, rtol=0)


def test_custom_score_tokens_and_template_are_settable(tiny_causal_path):
    model = CrossEncoder(str(tiny_causal_path), device="cpu")
    yes, no = model.score_head.true_token_id, model.score_head.false_token_id
    model.set_score_tokens("no", "yes")
    assert (model.score_head.true_token_id, model.score_head.false_token_id) == (no, yes)
    model.set_score_tokens(yes)  # ids work too; no false token: the raw true-token logit
    features = model.preprocess(PAIRS[:2])
    with torch.no_grad():
        full = model.hf_model(**features).logits[:, -1, yes]
    torch.testing.assert_close(model(features)[:, 0], full, atol=ATOL, rtol=0)
    model.chat_template = RERANK_CHAT_TEMPLATE
    tail = model.tokenizer("<|im_start|>relevant yes or no", add_special_tokens=False)["input_ids"]
    assert model.preprocess(PAIRS[:1])["input_ids"][0, -len(tail):].tolist() == tail
    model.chat_template = None
    assert model.chat_template is None


def test_bad_inputs_fail_before_any_work(tiny_causal_path, tiny_model_path):
    with pytest.raises(ValueError, match="num_labels=2.*causal"):
        CrossEncoder(str(tiny_causal_path), num_labels=2)
    with pytest.raises(ValueError, match="false_token='maybe' is not a token"):
        CrossEncoder(str(tiny_causal_path), score_tokens=("yes", "maybe"))
    with pytest.raises(ValueError, match="default_prompt_name='nope'"):
        CrossEncoder(str(tiny_causal_path), prompts={"q": "Q: "}, default_prompt_name="nope")
    with pytest.raises(ValueError, match="score_tokens.*classifier"):
        CrossEncoder(str(tiny_model_path), score_tokens=("yes", "no"))
    model = CrossEncoder(str(tiny_causal_path), device="cpu", prompts={"q": "Q: "})
    with pytest.raises(ValueError, match="prompt_name='query' is not one of the model's prompt names \\['q'\\]"):
        model.predict(PAIRS, prompt_name="query")
    with pytest.raises(ValueError, match="prompt_name='query'"):
        model.rank("q", ["d"], prompt_name="query")
    with pytest.raises(ValueError, match="'query' and 'document' message content does not reach"):
        model.chat_template = "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}"
    assert model.chat_template is None  # the rejected template is not kept
    with pytest.raises(ValueError, match="true_token='nope'"):
        model.set_score_tokens("nope")
    evaluator = CrossEncoderRerankingEvaluator(
        [{"query": "the man", "positive": ["a dog"], "negative": ["yes"]}], prompt_name="query")
    with pytest.raises(ValueError, match="prompt_name='query'"):
        evaluator(model)


def test_evaluator_prompt_reaches_predict(tiny_causal_path):
    model = CrossEncoder(str(tiny_causal_path), device="cpu", prompts={"q": "Query: "})
    samples = [{"query": "the man", "positive": ["a dog"], "negative": ["yes", "no more", "who is it"]}]
    plain = CrossEncoderRerankingEvaluator(samples, name="plain")
    named = CrossEncoderRerankingEvaluator(samples, name="named", prompt_name="q")
    text = CrossEncoderRerankingEvaluator(samples, name="text", prompt="Query: ")
    assert named.score(model, named.pairs()) == pytest.approx(model.predict(named.pairs(), prompt="Query: "))
    assert text.score(model, text.pairs()) == pytest.approx(named.score(model, named.pairs()))
    assert plain.score(model, plain.pairs()) == pytest.approx(model.predict(plain.pairs()))
    assert not np.allclose(plain.score(model, plain.pairs()), named.score(model, named.pairs()))


def test_module_directories_of_other_layouts(minilm_dir, tmp_path):
    # a SentenceTransformer (bi-encoder) directory: its transformer gets a fresh head, as in sentence-transformers
    model = CrossEncoder(str(minilm_dir), device="cpu")
    assert not model.is_causal and model.num_labels == 1 and model.prompts == {}
    # a cross-encoder module list raycross cannot score with: a clear error naming the modules
    model.save_pretrained(tmp_path / "ce", create_model_card=False)
    (tmp_path / "ce" / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    with pytest.raises(ValueError, match="found modules .*Pooling"):
        CrossEncoder(str(tmp_path / "ce"))


def test_hub_module_files_are_read_without_the_weights(tiny_causal_path, tmp_path, monkeypatch):
    import huggingface_hub

    from raycross import st_modules

    CrossEncoder(str(tiny_causal_path), device="cpu", score_tokens=("no", None)).save_pretrained(tmp_path / "repo")
    fetched = []

    def fake_download(repo_id, filename, **kwargs):  # the hub, served from a local save
        fetched.append(filename)
        path = tmp_path / "repo" / filename
        if not path.is_file():
            raise FileNotFoundError(filename)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    layout = st_modules.read_layout(st_modules.fetch_layout("someone/reranker"))
    assert layout.task == "text-generation" and layout.logit_score["false_token_id"] is None
    assert not any(name.endswith(".safetensors") for name in fetched)
