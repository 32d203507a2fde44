"""Padding-free forward of decoder LLMs (Llama, Mistral, Qwen2, Qwen3) for last-token scoring.

A reranker batch is left-padded so that every row ends at its last token. Here the projections, norms
and MLPs run on the packed real tokens only (rotary positions restart at 0 in every row); attention runs
in a right-aligned padded layout where the causal mask alone already hides the padding, and the last
layer computes the query, attention output and MLP of the one token that is scored. Rotary attention
depends on relative positions only, so the hidden states equal the transformers forward on the padded
batch within float rounding (checked in tests/unit/test_causal_unpadded.py).

Models with sliding-window layers, or whose layer layout is not recognised, use the transformers forward
(:func:`supports_packed` says which). Gradient checkpointing is honoured per layer.

Example:
    >>> hidden = packed_last_hidden(hf_model.model, input_ids, attention_mask)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from raycross.unpadded import _has

_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
_LAYER_PARTS = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn.q_proj", "self_attn.k_proj",
                "self_attn.v_proj", "self_attn.o_proj")


def supports_packed(hf_model: nn.Module) -> bool:
    """True when `hf_model` (a ``*ForCausalLM``) is a decoder family whose layers this module can run packed.

    Example:
        >>> supports_packed(model.hf_model)  # doctest: +SKIP
        True
    """
    config = getattr(hf_model, "config", None)
    base = getattr(hf_model, "model", None)
    if config is None or base is None or getattr(config, "model_type", None) not in _FAMILIES:
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    if any(t != "full_attention" for t in (getattr(config, "layer_types", None) or [])):
        return False
    if not all(_has(base, p) for p in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return False
    return all(_has(layer, p) and hasattr(layer.self_attn, "scaling") for layer in base.layers for p in _LAYER_PARTS)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:  # x (tokens, heads, dim), cos/sin (tokens, dim)
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


def packed_last_hidden(base: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Final-normed hidden state (batch, hidden) of each row's last real token, computed on real tokens only.

    Example:
        >>> packed_last_hidden(hf_model.model, features["input_ids"], features["attention_mask"])  # doctest: +SKIP
    """
    mask = attention_mask.bool()
    batch = mask.shape[0]
    lengths = mask.sum(dim=1)
    width = int(lengths.max())
    positions = (mask.cumsum(dim=1) - 1)[mask]  # (tokens,): 0..len-1 within each row
    rows = torch.repeat_interleave(torch.arange(batch, device=mask.device), lengths)
    slots = rows * width + positions  # where each packed token sits in a right-aligned (batch, width) layout
    last = torch.cumsum(lengths, 0) - 1  # packed index of each row's last token
    hidden = base.embed_tokens(input_ids[mask])
    cos, sin = base.rotary_emb(hidden.unsqueeze(0), positions.unsqueeze(0))
    cos, sin = cos[0], sin[0]
    layout = (slots, batch, width, lengths)
    *layers, final = base.layers
    checkpointing = getattr(base, "gradient_checkpointing", False) or getattr(base.layers[0], "gradient_checkpointing", False)
    use_checkpoint = bool(checkpointing) and base.training and torch.is_grad_enabled()
    for layer in layers:
        if use_checkpoint:
            hidden = checkpoint(_layer, layer, hidden, cos, sin, layout, None, use_reentrant=False)
        else:
            hidden = _layer(layer, hidden, cos, sin, layout, None)
    if use_checkpoint:
        hidden = checkpoint(_layer, final, hidden, cos, sin, layout, last, use_reentrant=False)
    else:
        hidden = _layer(final, hidden, cos, sin, layout, last)
    return base.norm(hidden)


def _layer(layer: Any, hidden: Tensor, cos: Tensor, sin: Tensor, layout: tuple, queries: Tensor | None) -> Tensor:
    """One decoder layer on packed tokens; with `queries` (one packed index per row) only those rows' outputs."""
    slots, batch, width, lengths = layout
    attn = layer.self_attn
    dim = attn.head_dim
    x = layer.input_layernorm(hidden)
    x_q = x if queries is None else x.index_select(0, queries)
    q = attn.q_proj(x_q).view(x_q.shape[0], -1, dim)
    k = attn.k_proj(x).view(x.shape[0], -1, dim)
    v = attn.v_proj(x).view(x.shape[0], -1, dim)
    if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head
        q, k = attn.q_norm(q), attn.k_norm(k)
    cos_q, sin_q = (cos, sin) if queries is None else (cos.index_select(0, queries), sin.index_select(0, queries))
    q, k = _rope(q, cos_q, sin_q), _rope(k, cos, sin)

    def padded(t: Tensor) -> Tensor:  # (tokens, heads, dim) -> (batch, heads, width, dim)
        full = t.new_zeros(batch * width, t.shape[1], dim).index_copy(0, slots, t)
        return full.view(batch, width, t.shape[1], dim).transpose(1, 2)

    k, v = padded(k), padded(v)
    dropout = attn.attention_dropout if attn.training else 0.0
    gqa = q.shape[1] != k.shape[1]
    if queries is None:
        out = F.scaled_dot_product_attention(padded(q), k, v, is_causal=True, dropout_p=dropout,
                                             scale=attn.scaling, enable_gqa=gqa)
        out = out.transpose(1, 2).reshape(batch * width, -1).index_select(0, slots)
        residual = hidden
    else:
        key_mask = (torch.arange(width, device=k.device) < lengths[:, None])[:, None, None, :]
        out = F.scaled_dot_product_attention(q.view(batch, 1, -1, dim).transpose(1, 2), k, v, attn_mask=key_mask,
                                             dropout_p=dropout, scale=attn.scaling, enable_gqa=gqa)
        out = out.transpose(1, 2).reshape(batch, -1)
        residual = hidden.index_select(0, queries)
    hidden = residual + attn.o_proj(out)
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))
