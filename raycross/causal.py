"""Causal-LM rerankers: a decoder LLM scores a pair by the logit of a "yes" token after reading it.

The score of a (left-padded) input is the logit of the true token at the last position, minus the false
token's logit when there is one (sentence-transformers 6.2's ``LogitScore``). Only the two vocabulary
rows of the LM head are computed (the same dot products as the full head, a fraction of the work), and
for the decoder families in :mod:`raycross.unpadded_decoder` the transformer runs on real tokens only.

Example:
    >>> head = LogitScore(true_token_id=5, false_token_id=7)
    >>> head.get_config_dict()
    {'true_token_id': 5, 'false_token_id': 7, 'module_input_name': 'causal_logits'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from raycross.unpadded_decoder import packed_last_hidden, supports_packed


def is_fsdp_sharded(module: nn.Module) -> bool:
    """True when `module` was sharded with FSDP2's ``fully_shard``."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(module, FSDPModule)

DEFAULT_TRUE_TOKEN = "yes"
DEFAULT_FALSE_TOKEN = "no"
# Families whose LM head is a plain linear layer on the final-normed hidden state (no logit scaling or
# soft-capping): the score can be computed from two rows of it. Others run the full head at one position.
_PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def is_causal_lm_config(config: Any) -> bool:
    """True when a transformers config describes a ``*ForCausalLM`` checkpoint (sentence-transformers' test).

    Example:
        >>> from transformers import Qwen3Config
        >>> is_causal_lm_config(Qwen3Config(architectures=["Qwen3ForCausalLM"]))
        True
    """
    architectures = getattr(config, "architectures", None) or []
    return bool(architectures) and str(architectures[0]).endswith("ForCausalLM")


def token_id(tokenizer: Any, token: str | int, argument: str) -> int:
    """The vocabulary id of `token` (a token string or an id), or a ValueError naming `argument`.

    Example:
        >>> token_id(tokenizer, "yes", "true_token")  # doctest: +SKIP
        9693
    """
    vocab_size = len(tokenizer)
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        raise TypeError(f"{argument} must be a token string or a token id, found {type(token).__name__} {token!r}")
    if isinstance(token, int):
        if not 0 <= token < vocab_size:
            raise ValueError(f"{argument}={token} is not a token id of this tokenizer (vocabulary size {vocab_size})")
        return token
    found = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    if found is None or (found == unk and token != getattr(tokenizer, "unk_token", None)):
        raise ValueError(
            f"{argument}={token!r} is not a token of this tokenizer's vocabulary. Pick a token that is, e.g. "
            f"CrossEncoder(..., score_tokens=('yes', 'no')) for a vocabulary with those tokens, or pass token ids."
        )
    return int(found)


class LogitScore(nn.Module):
    """Turns last-position LM logits into a relevance score: ``logit[true] - logit[false]`` (or ``logit[true]``).

    Holds no parameters; :meth:`score` reads the two rows of the model's LM head it needs.

    Example:
        >>> LogitScore(3, None)(torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
        tensor([[3.]])
    """

    config_keys = ("true_token_id", "false_token_id", "module_input_name")

    def __init__(self, true_token_id: int, false_token_id: int | None = None, module_input_name: str = "causal_logits"):
        super().__init__()
        self.true_token_id = int(true_token_id)
        self.false_token_id = None if false_token_id is None else int(false_token_id)
        self.module_input_name = module_input_name

    @property
    def token_ids(self) -> list[int]:
        return [self.true_token_id] + ([] if self.false_token_id is None else [self.false_token_id])

    def forward(self, logits: Tensor) -> Tensor:
        """Scores (batch, 1) from last-position logits (batch, vocab)."""
        scores = logits[:, self.true_token_id]
        if self.false_token_id is not None:
            scores = scores - logits[:, self.false_token_id]
        return scores.unsqueeze(1)

    def from_two_rows(self, token_logits: Tensor) -> Tensor:
        """Scores (batch, 1) from the logits of :attr:`token_ids` only (batch, 1 or 2)."""
        scores = token_logits[:, 0]
        if self.false_token_id is not None:
            scores = scores - token_logits[:, 1]
        return scores.unsqueeze(1)

    def get_config_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.config_keys}

    def extra_repr(self) -> str:
        return f"true_token_id={self.true_token_id}, false_token_id={self.false_token_id}"


def _token_logits(hf_model: nn.Module, hidden: Tensor, token_ids: list[int]) -> Tensor:
    """Logits of `token_ids` for final hidden states (batch, hidden): two rows of the LM head."""
    head = hf_model.get_output_embeddings()
    index = torch.tensor(token_ids, device=hidden.device)
    # with an adapter the score tokens' rows are trainable (raycross.adapters.ScoredLMHead)
    weight = head.rows(index) if hasattr(head, "rows") else head.weight.index_select(0, index)
    bias = head.bias.index_select(0, index) if getattr(head, "bias", None) is not None else None
    return nn.functional.linear(hidden, weight, bias)


def has_plain_head(hf_model: nn.Module) -> bool:
    """True when the LM head is a plain linear layer on the decoder's final hidden state."""
    config = hf_model.config
    if getattr(config, "model_type", None) not in _PLAIN_HEAD_TYPES:
        return False
    head = hf_model.get_output_embeddings()
    if is_fsdp_sharded(hf_model):
        return False  # FSDP2 all-gathers through the root's forward: the full model at the last position
    plain = type(head) is nn.Linear or type(getattr(head, "linear", None)) is nn.Linear
    return plain and hasattr(hf_model, "model")


def causal_scores(hf_model: nn.Module, head: LogitScore, features: Mapping[str, Tensor], packed: bool = True,
                  head_rows: bool = True) -> Tensor:
    """Scores (batch, 1) of left-padded features with a ``*ForCausalLM`` model.

    Uses, in order of preference: the packed padding-free decoder (`packed` and a supported family), the
    decoder plus two LM-head rows (`head_rows` and a plain-head family), or the full model with
    ``logits_to_keep=1`` (the only one that calls the model's own forward: needed under FSDP2).

    Example:
        >>> causal_scores(model.hf_model, model.score_head, model.preprocess([("q", "d")]))  # doctest: +SKIP
    """
    input_ids, mask = features["input_ids"], features.get("attention_mask")
    if mask is not None and not bool(mask[:, -1].all()):
        raise ValueError(
            "causal reranker inputs must be left-padded (every row ends in a real token); "
            "set model.tokenizer.padding_side = 'left'"
        )
    if head_rows and has_plain_head(hf_model):
        if packed and mask is not None and supports_packed(hf_model):
            hidden = packed_last_hidden(hf_model.model, input_ids, mask)
        else:
            hidden = hf_model.model(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state[:, -1]
        return head.from_two_rows(_token_logits(hf_model, hidden, head.token_ids))
    extra = {k: v for k, v in features.items() if k not in ("input_ids", "attention_mask")}
    logits = hf_model(input_ids=input_ids, attention_mask=mask, use_cache=False, logits_to_keep=1, **extra).logits
    return head(logits[:, -1])
