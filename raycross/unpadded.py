"""Padding-free forward pass for BERT-family sequence classifiers (BERT, MiniLM, RoBERTa, XLM-R).

A padded batch of pairs wastes compute in proportion to its padding: on real reranking pairs (WordNet
context -> definition, batch 32) only about half of the padded positions are real tokens. Here the
linear layers (Q/K/V, attention output, feed-forward) and LayerNorms run on the packed real tokens only;
the padded layout is rebuilt just for the attention product, which is cheap next to the matmuls at the
lengths of typical pairs. The classification heads read the first token only, so the last layer computes
queries, attention output and feed-forward for that token alone. Same weights, same maths: logits equal the transformers forward (within float
rounding), dropout is applied at the same places with the same rates.

Models whose layout is not recognised (or with gradient checkpointing on, or left padding) use the plain
transformers forward: :func:`supports_unpadded` says which.

Example:
    >>> logits = unpadded_logits(hf_model, input_ids, attention_mask, token_type_ids)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_HEADS = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta"}
_LAYER_PARTS = (
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "attention.output.LayerNorm", "attention.output.dropout", "intermediate.dense", "output.dense",
    "output.LayerNorm", "output.dropout",
)


def _has(module: nn.Module, dotted: str) -> bool:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return False
    return True


def supports_unpadded(hf_model: nn.Module) -> bool:
    """True when `hf_model` is a BERT/RoBERTa/XLM-R sequence classifier whose layout this module knows.

    Example:
        >>> supports_unpadded(model.hf_model)  # doctest: +SKIP
        True
    """
    config = getattr(hf_model, "config", None)
    kind = _HEADS.get(getattr(config, "model_type", None))
    if kind is None or getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "chunk_size_feed_forward", 0) or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    base = getattr(hf_model, kind, None)
    if base is None or getattr(base, "gradient_checkpointing", False) or not _has(base, "encoder.layer"):
        return False
    if not all(_has(layer, part) for layer in base.encoder.layer for part in _LAYER_PARTS):
        return False
    if kind == "bert":
        return getattr(base, "pooler", None) is not None and _has(hf_model, "classifier") and _has(hf_model, "dropout")
    return _has(hf_model, "classifier.out_proj")


def is_right_padded(attention_mask: Tensor) -> bool:
    """Every row is ones then zeros (the layout the packed positions assume)."""
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return bool(torch.equal(attention_mask.bool(), positions.unsqueeze(0) < lengths))


def unpadded_logits(
    hf_model: nn.Module, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
) -> Tensor:
    """Logits of a right-padded batch, computing the transformer layers on real tokens only.

    Example:
        >>> unpadded_logits(model.hf_model, **model.preprocess([("q", "d")]))  # doctest: +SKIP
        tensor([[0.1234]])
    """
    config = hf_model.config
    kind = _HEADS[config.model_type]
    base = getattr(hf_model, kind)
    batch, width = input_ids.shape
    keep = attention_mask.reshape(-1).nonzero().squeeze(1)  # flat indices of the real tokens
    hidden = base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    hidden = hidden.reshape(batch * width, -1).index_select(0, keep)
    key_mask = attention_mask.bool()[:, None, None, :]
    heads = config.num_attention_heads
    lengths = attention_mask.sum(dim=1)
    first_tokens = torch.cumsum(lengths, 0) - lengths  # packed index of each row's [CLS] / <s>
    *layers, last = base.encoder.layer
    for layer in layers:
        hidden = _layer(layer, hidden, keep, key_mask, batch, width, heads)
    # the head reads the first token only: the last layer computes the rest of the rows' keys and values,
    # and its queries, attention output and feed-forward for the first tokens alone
    first = _layer(last, hidden, keep, key_mask, batch, width, heads, queries=first_tokens)
    first = first.unsqueeze(1)  # (batch, 1, hidden): the heads take [:, 0]
    if kind == "bert":
        return hf_model.classifier(hf_model.dropout(base.pooler(first)))
    return hf_model.classifier(first)


def _layer(
    layer: Any, hidden: Tensor, keep: Tensor, key_mask: Tensor, batch: int, width: int, heads: int,
    queries: Tensor | None = None,
) -> Tensor:
    """One encoder layer on packed tokens; with `queries` (one packed index per row), only those rows'
    outputs are computed, shape (batch, hidden)."""
    attention = layer.attention
    self_attn = attention.self
    size = hidden.shape[-1]

    def padded(x: Tensor) -> Tensor:  # packed (tokens, size) -> (batch, heads, width, head_dim)
        full = x.new_zeros(batch * width, x.shape[-1]).index_copy(0, keep, x)
        return full.view(batch, width, heads, -1).transpose(1, 2)

    k, v = padded(self_attn.key(hidden)), padded(self_attn.value(hidden))
    dropout = self_attn.dropout.p if self_attn.training else 0.0
    if queries is None:
        q = padded(self_attn.query(hidden))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(batch * width, size).index_select(0, keep)
    else:
        hidden = hidden.index_select(0, queries)
        q = self_attn.query(hidden).view(batch, 1, heads, -1).transpose(1, 2)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(batch, size)
    out = attention.output
    attended = out.LayerNorm(out.dropout(out.dense(context)) + hidden)
    inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(attended))
    ffn = layer.output
    return ffn.LayerNorm(ffn.dropout(ffn.dense(inner)) + attended)
