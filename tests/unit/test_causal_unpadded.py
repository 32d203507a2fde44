"""The padding-free decoder forward (raycross.unpadded_decoder) equals the transformers forward."""

from __future__ import annotations

import pytest
import torch

from raycross import CrossEncoder
from raycross.causal import causal_scores
from raycross.unpadded_decoder import supports_packed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAIRS = [("the man", "a dog"), ("what is a cat", "an animal that people keep in the house " * 4),
         ("who", "is it"), ("yes", "no")]


def _scores(model, features, packed):
    return causal_scores(model.hf_model, model.score_head, features, packed=packed)


@pytest.mark.parametrize("fixture", ["tiny_causal_path", "tiny_llama_path"])
def test_packed_forward_equals_transformers_forward(fixture, request):
    model = CrossEncoder(str(request.getfixturevalue(fixture)), device="cpu")
    assert supports_packed(model.hf_model)
    features = model.preprocess(PAIRS)
    with torch.no_grad():
        reference = model.hf_model(**features).logits[:, -1]  # the plain transformers forward, full LM head
        packed = _scores(model, features, packed=True)
    head = model.score_head
    expected = reference[:, head.true_token_id] - reference[:, head.false_token_id]
    torch.testing.assert_close(packed[:, 0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_packed_gradients_equal_plain_gradients(tiny_llama_path, checkpointing):
    model = CrossEncoder(str(tiny_llama_path), device="cpu")
    model.train()
    if checkpointing:
        model.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    features = model.preprocess(PAIRS)
    grads = []
    for packed in (False, True):
        model.zero_grad()
        _scores(model, features, packed).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.hf_model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_unsupported_layouts_use_the_plain_forward(tiny_causal_path):
    model = CrossEncoder(str(tiny_causal_path), device="cpu")
    model.hf_model.config.layer_types = ["sliding_attention"] * len(model.hf_model.config.layer_types)
    assert not supports_packed(model.hf_model)
    model.hf_model.config.layer_types = ["full_attention"] * len(model.hf_model.config.layer_types)
    right_padded = model.tokenizer(["the man", "a dog runs"], padding=True, padding_side="right", return_tensors="pt")
    with pytest.raises(ValueError, match="left-padded"):
        model(dict(right_padded))
