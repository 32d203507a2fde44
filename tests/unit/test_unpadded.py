"""The padding-free forward (raycross.unpadded) computes what the transformers forward computes."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from raycross.unpadded import is_right_padded, supports_unpadded, unpadded_logits


def _batch(vocab: int, lengths: list[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
    width = max(lengths)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (len(lengths), width), generator=generator)  # no special ids
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    types = ((torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None] // 2) & mask.bool()).long()
    return {"input_ids": ids * mask + pad_id * (1 - mask), "attention_mask": mask, "token_type_ids": types}


def _bert(num_labels: int = 1) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(config)


def _xlmr() -> XLMRobertaForSequenceClassification:
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=70, num_labels=2, pad_token_id=1,
                              type_vocab_size=1)
    return XLMRobertaForSequenceClassification(config)


LENGTHS = [3, 17, 9, 17, 4, 12]


@pytest.mark.parametrize("build", [_bert, _xlmr], ids=["bert", "xlm-roberta"])
def test_logits_and_gradients_equal_the_transformers_forward(build):
    model = build().eval()
    assert supports_unpadded(model)
    features = _batch(model.config.vocab_size, LENGTHS, model.config.pad_token_id)
    if model.config.type_vocab_size == 1:
        features.pop("token_type_ids")
    ours = unpadded_logits(model, **features)
    ours.pow(2).sum().backward()
    our_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    theirs = model(**features).logits
    theirs.pow(2).sum().backward()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(our_grads[name], param.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_each_row_is_independent_of_the_batch_padding():
    model = _bert(3).eval()
    features = _batch(50, LENGTHS)
    together = unpadded_logits(model, **features)
    for row, length in enumerate(LENGTHS):
        alone = {k: v[row : row + 1, :length] for k, v in features.items()}
        torch.testing.assert_close(together[row : row + 1], model(**alone).logits, atol=1e-5, rtol=1e-5)


def test_dropout_in_training_mode_is_random_but_unbiased():
    model = _bert().train()
    features = _batch(50, LENGTHS)
    first, second = unpadded_logits(model, **features), unpadded_logits(model, **features)
    assert not torch.allclose(first, second)  # dropout is active
    with torch.no_grad():
        mean = torch.stack([unpadded_logits(model, **features) for _ in range(300)]).mean(0)
        reference = torch.stack([model(**features).logits for _ in range(300)]).mean(0)
    torch.testing.assert_close(mean, reference, atol=0.05, rtol=0.0)


def test_unsupported_layouts_are_recognised():
    model = _bert()
    model.bert.gradient_checkpointing = True
    assert not supports_unpadded(model)
    assert not supports_unpadded(torch.nn.Linear(2, 2))
    assert is_right_padded(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert not is_right_padded(torch.tensor([[0, 1, 1], [1, 1, 1]]))


def test_cross_encoder_forward_uses_it_and_matches_the_plain_path(tiny_model):
    pairs = [("a short query", "a much longer document " * 4), ("q", "d"), ("another query here", "doc")]
    features = tiny_model.preprocess(pairs)
    assert tiny_model._should_unpad(features)
    with torch.no_grad():
        fast = tiny_model(features)
        tiny_model.unpad_inputs = False
        plain = tiny_model(features)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    tiny_model.unpad_inputs = True
    left = dict(features, attention_mask=features["attention_mask"].flip(1))  # left padding: plain forward
    assert not tiny_model._should_unpad(left)


def test_saved_model_is_unchanged_by_unpadded_training(tiny_model, tmp_path):
    tiny_model.train()
    features = tiny_model.preprocess([("query one", "doc " * 6), ("q", "d")])
    tiny_model(features).sum().backward()
    tiny_model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    tiny_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(features), reloaded(**features).logits, atol=1e-5, rtol=1e-5)
