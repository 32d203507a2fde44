"""LoRA (and other peft) adapters on a CrossEncoder: add, load, switch, save adapter-only or merged.

The adapter is injected in place with peft (``peft.inject_adapter_in_model``): ``model.hf_model`` stays
the transformers model, only its target layers gain adapter weights. The scoring head (the
``classifier``/``score`` module, or the modules a model names in ``adapter_head_modules``) trains with the
adapter and is saved with it. An adapter-only directory is in peft's format (``adapter_config.json`` with
the head in ``modules_to_save``, ``adapter_model.safetensors``), so ``peft.PeftModel.from_pretrained``
loads it too; raycross adds the tokenizer and the sentence-transformers marker.

raycross holds one adapter per model (the head is shared, so a second adapter would silently share it).

Example:
    >>> from peft import LoraConfig  # doctest: +SKIP
    >>> model.add_adapter(LoraConfig(r=8, target_modules=["query", "value"]))  # doctest: +SKIP
    >>> model.save_pretrained("adapter-dir")  # adapter + head only  # doctest: +SKIP
    >>> CrossEncoder("adapter-dir").predict([("q", "d")])  # base model + adapter  # doctest: +SKIP
    >>> model.save_pretrained("merged-dir", merge_adapter=True)  # a plain HF model  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
HEAD_NAMES = ("classifier", "score")
_INSTALL = "pip install 'raycross[lora]' (peft>=0.13)"


def require_peft() -> Any:
    """Import peft, or raise an ImportError that says how to install it."""
    try:
        import peft
    except ImportError as exc:
        raise ImportError(f"LoRA adapters need the peft library: {_INSTALL}") from exc
    return peft


def as_lora_config(config: Any, argument: str = "adapter_config") -> Any:
    """A peft config from a peft config object or a dict of ``LoraConfig`` keyword arguments.

    Example:
        >>> as_lora_config({"r": 4, "target_modules": ["query"]}).r  # doctest: +SKIP
        4
    """
    peft = require_peft()
    if isinstance(config, peft.PeftConfig):
        return config
    if isinstance(config, dict):
        try:
            return peft.LoraConfig(**config)
        except TypeError as exc:
            raise ValueError(f"{argument}: not valid LoraConfig arguments ({exc}), found {config!r}") from None
    raise TypeError(f"{argument}: expected a peft LoraConfig (or a dict of its arguments), found {type(config).__name__}")


class ScoreRows(nn.Module):
    """Trainable copies of the LM-head rows of a causal reranker's score tokens (``weight``: (tokens, hidden))."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(rows.detach().clone())


class ScoredLMHead(nn.Module):
    """A causal reranker's LM head whose score-token rows (true/false tokens) are the trainable
    :class:`ScoreRows`; every other row is the frozen original (``linear``: tied weights stay tied;
    not called ``base_layer``, which peft takes for one of its own layers).

    Example:
        >>> head = ScoredLMHead(torch.nn.Linear(4, 10, bias=False), [3, 7])
        >>> head(torch.ones(2, 4)).shape
        torch.Size([2, 10])
    """

    def __init__(self, linear: nn.Linear, token_ids: list[int]) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)
        self.score_rows = ScoreRows(linear.weight[token_ids])

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.linear.bias

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """The weight rows of the tokens `index` (the trainable ones for the score tokens)."""
        if index.shape == self.token_ids.shape and torch.equal(index.to(self.token_ids.device), self.token_ids):
            return self.score_rows.weight
        return self.linear.weight.index_select(0, index)

    def merged_weight(self) -> torch.Tensor:
        return self.linear.weight.detach().index_copy(0, self.token_ids, self.score_rows.weight.detach())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.linear(hidden)
        rows = nn.functional.linear(hidden, self.score_rows.weight.to(hidden.dtype))
        if self.linear.bias is not None:
            rows = rows + self.linear.bias[self.token_ids].to(rows.dtype)
        return out.index_copy(-1, self.token_ids.to(out.device), rows.to(out.dtype))


def install_score_rows(hf_model: nn.Module, token_ids: list[int]) -> None:
    """Make the score tokens' LM-head rows of a causal reranker trainable head parameters
    (``lm_head.score_rows``), trained and saved with the adapter."""
    head = hf_model.get_output_embeddings()
    if isinstance(head, ScoredLMHead):
        return
    if not isinstance(head, nn.Linear):
        raise ValueError(f"adapter on a causal reranker: expected a linear LM head, found {type(head).__name__}")
    hf_model.set_output_embeddings(ScoredLMHead(head, token_ids))
    name = next(n for n, m in hf_model.named_modules() if m is hf_model.get_output_embeddings())
    hf_model.adapter_head_modules = [f"{name}.score_rows"]


def remove_score_rows(hf_model: nn.Module) -> None:
    """Fold the trained score rows back into the LM head and restore the plain linear layer."""
    head = hf_model.get_output_embeddings()
    if isinstance(head, ScoredLMHead):
        with torch.no_grad():
            head.linear.weight.index_copy_(0, head.token_ids, head.score_rows.weight)
        hf_model.set_output_embeddings(head.linear)
        if getattr(hf_model, "adapter_head_modules", None):
            del hf_model.adapter_head_modules


def head_module_names(hf_model: nn.Module) -> list[str]:
    """The scoring-head modules that train and save with an adapter.

    A model may name them itself (``hf_model.adapter_head_modules``: e.g. a causal reranker's
    true/false-token scoring module); else the top-level ``classifier`` or ``score`` module.
    """
    named = getattr(hf_model, "adapter_head_modules", None)
    if named:
        return list(named)
    return [name for name in HEAD_NAMES if isinstance(getattr(hf_model, name, None), nn.Module)]


def check_target_modules(config: Any, hf_model: nn.Module, argument: str = "target_modules") -> None:
    """Raise a ValueError naming the target modules of `config` that match no module of `hf_model`."""
    targets = getattr(config, "target_modules", None)
    if targets is None:
        return  # peft picks defaults for known architectures (and raises itself for unknown ones)
    names = [name for name, _ in hf_model.named_modules() if name]
    if isinstance(targets, str):
        if targets == "all-linear" or any(re.fullmatch(targets, n) for n in names):
            return
        missing = [targets]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in hf_model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"{argument}: no module of {type(hf_model).__name__} matches {missing}; "
            f"its linear layers are named {linear}"
        )


def adapter_names(hf_model: nn.Module) -> list[str]:
    """Names of the adapters injected into `hf_model` (empty without one)."""
    return list(getattr(hf_model, "peft_config", None) or {})


def check_can_inject(hf_model: nn.Module, config: Any, adapter_name: str) -> None:
    """ValueError when `hf_model` already has an adapter, the name is empty, or a target module is missing."""
    require_peft()
    existing = adapter_names(hf_model)
    if existing:
        raise ValueError(
            f"adapter_name={adapter_name!r}: the model already has the adapter {existing[0]!r}; raycross holds one "
            "adapter per model (its scoring head trains with it). Merge it (merge_and_unload) or delete it "
            "(delete_adapter) first"
        )
    if not isinstance(adapter_name, str) or not adapter_name:
        raise ValueError(f"adapter_name: expected a non-empty string, found {adapter_name!r}")
    check_target_modules(config, hf_model)


def inject(hf_model: nn.Module, config: Any, adapter_name: str) -> Any:
    """Inject a new adapter into `hf_model` in place (after :func:`check_can_inject`); returns the peft
    tuner that manages it. Only the adapter and the head stay trainable."""
    check_can_inject(hf_model, config, adapter_name)
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING.get(config.peft_type)
    if tuner_cls is None or getattr(tuner_cls, "uses_shared_state", False) or config.is_prompt_learning:
        raise ValueError(f"adapter_config: peft type {config.peft_type} cannot be injected in place; use LoRA")
    extra_heads = list(config.modules_to_save or [])
    if extra_heads:  # raycross trains and saves them as head modules (peft would wrap them in copies)
        heads = head_module_names(hf_model)
        hf_model.adapter_head_modules = heads + [h for h in extra_heads if h not in heads]
        config = copy.deepcopy(config)
        config.modules_to_save = None
    tuner = tuner_cls(hf_model, config, adapter_name=adapter_name)
    set_trainable(hf_model, True)
    return tuner


def set_trainable(hf_model: nn.Module, trainable: bool) -> None:
    """Adapter + head parameters trainable (True) or everything frozen (False); base weights stay frozen."""
    heads = [hf_model.get_submodule(name) for name in head_module_names(hf_model)]
    head_params = {id(p) for head in heads for p in head.parameters()}
    for name, param in hf_model.named_parameters():
        param.requires_grad_(trainable and (id(param) in head_params or "lora_" in name or _is_adapter_param(name)))


def _is_adapter_param(name: str) -> bool:
    # other in-place peft tuners (IA3, LoHa, ...) name their weights after the method
    return any(f".{prefix}" in name for prefix in ("ia3_", "hada_", "lokr_", "oft_", "boft_", "vera_"))


def tuner_layers(hf_model: nn.Module) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in hf_model.modules() if isinstance(m, BaseTunerLayer)]


def adapter_state_dict(hf_model: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """The adapter's weights and the head's, keyed as in peft's ``adapter_model.safetensors``."""
    from peft import get_peft_model_state_dict

    state = {PEFT_PREFIX + k: v for k, v in get_peft_model_state_dict(hf_model, adapter_name=adapter_name).items()}
    for head in head_module_names(hf_model):
        for key, value in hf_model.get_submodule(head).state_dict().items():
            state[f"{PEFT_PREFIX}{head}.{key}"] = value
    return state


def save_adapter(hf_model: nn.Module, path: Path, adapter_name: str, base_model: str | None) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (adapter + head) into `path`."""
    from safetensors.torch import save_file

    config = copy.deepcopy(hf_model.peft_config[adapter_name])
    heads = head_module_names(hf_model)
    config.modules_to_save = sorted(set(config.modules_to_save or []) | set(heads)) or None
    config.base_model_name_or_path = base_model
    config.inference_mode = True
    if heads and set(heads) <= set(HEAD_NAMES) and config.task_type is None:
        config.task_type = "SEQ_CLS"
    config.save_pretrained(str(path))
    state = {k: v.detach().to("cpu").contiguous() for k, v in adapter_state_dict(hf_model, adapter_name).items()}
    save_file(state, str(path / ADAPTER_WEIGHTS), metadata={"format": "pt"})


def read_adapter_config(path: str | Path) -> Any:
    """The peft config saved in an adapter directory."""
    from peft import PeftConfig

    path = Path(path)
    if not (path / ADAPTER_CONFIG).is_file():
        raise ValueError(f"{path}: not an adapter directory ({ADAPTER_CONFIG} not found)")
    return PeftConfig.from_pretrained(str(path))


def load_adapter_weights(hf_model: nn.Module, path: str | Path, adapter_name: str) -> None:
    """Load an adapter directory's weights (adapter + head) into `hf_model`, which holds that adapter."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(path)
    state = {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v
             for k, v in load_file(str(path / ADAPTER_WEIGHTS)).items()}
    heads = head_module_names(hf_model)
    head_state: dict[str, dict[str, torch.Tensor]] = {h: {} for h in heads}
    adapter_state = {}
    for key, value in state.items():
        head = next((h for h in heads if key.startswith(h + ".")), None)
        if head is None:
            adapter_state[key] = value
        else:
            head_state[head][key[len(head) + 1:]] = value
    result = set_peft_model_state_dict(hf_model, adapter_state, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"adapter {path}: weights that match no adapter layer of the model: {unexpected[:5]}")
    for head, values in head_state.items():
        if values:
            hf_model.get_submodule(head).load_state_dict(values)
        else:
            logger.warning("adapter %s holds no weights for the head %r: keeping the model's own", path, head)


def merged_state_dict(hf_model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `hf_model` with the active adapters merged into the base weights, keyed as the
    plain transformers model (no adapter keys). The model itself is not changed."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    state = {}
    deltas: dict[str, torch.Tensor] = {}
    for name, module in hf_model.named_modules():
        if isinstance(module, BaseTunerLayer) and not module.disable_adapters:
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            if isinstance(delta, torch.Tensor):
                deltas[f"{name}.base_layer.weight"] = delta
    scored = [name for name, module in hf_model.named_modules() if isinstance(module, ScoredLMHead)]
    for name in scored:
        module = hf_model.get_submodule(name)
        deltas[f"{name}.linear.weight"] = module.merged_weight() - module.linear.weight.detach()
    for key, value in hf_model.state_dict().items():
        if "lora_" in key or _is_adapter_param(key) or ".score_rows." in key:
            continue
        if key in deltas:
            value = value + deltas[key].to(value.dtype)
        key = key.replace(".base_layer.", ".")
        for name in scored:
            key = key.replace(f"{name}.linear.", f"{name}.")
        state[key] = value
    return state


@contextmanager
def untied_for_merge(hf_model: nn.Module) -> Iterator[None]:
    """While saving a merged causal reranker whose LM head is tied to the input embeddings: untie them in
    the config, so the trained score rows are written as a separate LM head (the embeddings stay as they were)."""
    head = hf_model.get_output_embeddings()
    config = hf_model.config
    tied = isinstance(head, ScoredLMHead) and getattr(config, "tie_word_embeddings", False)
    if tied:
        config.tie_word_embeddings = False
    try:
        yield
    finally:
        if tied:
            config.tie_word_embeddings = True


def remove_adapter(tuner: Any, hf_model: nn.Module, merge: bool) -> None:
    """Remove the adapter layers (in place), merging them into the base weights first when `merge`; the
    trained head stays (score rows are folded into the LM head). All parameters become trainable again."""
    if merge:
        tuner.merge_and_unload()
    else:
        tuner.unload()
    remove_score_rows(hf_model)
    if hasattr(hf_model, "peft_config"):
        del hf_model.peft_config
    for param in hf_model.parameters():
        param.requires_grad_(True)


def saved_marker(path: Path) -> dict[str, Any]:
    """raycross's entry of an adapter directory's sentence-transformers config (num_labels, adapter name)."""
    file = path / "config_sentence_transformers.json"
    if not file.is_file():
        return {}
    with open(file, encoding="utf8") as f:
        return dict(json.load(f).get("raycross_adapter", {}))
