"""Feature-extraction cross-encoders: a bare transformer, a Pooling step and Dense layers that write the score.

sentence-transformers 6.2 documents this module chain for cross-encoders next to the sequence classifier and the
causal LM + LogitScore: ``Transformer(transformer_task="feature-extraction")`` (``AutoModel``, no head), a
``Pooling`` (e.g. ``"lasttoken"`` for a decoder LLM, ``"cls"`` or ``"mean"`` for an encoder), then ``Dense``
layers, optionally with ``Normalize`` between them; the last ``Dense`` writes ``module_output_name="scores"``.
:class:`PooledScoreModel` holds that chain as one module (the transformer plus its head), so the rest of
raycross (training loop, DDP, checkpoints, losses) treats it like any transformers model: ``forward(**features)``
returns an object with ``.logits``. Pooling follows sentence-transformers' padded maths exactly. Last-token
pooling on a Llama/Mistral/Qwen2/Qwen3 decoder runs padding-free (:func:`raycross.unpadded_decoder.packed_last_hidden`,
the same hidden state within float rounding); every other chain runs the plain transformers forward.

Example:
    >>> steps = [Dense(8, 1, activation_function=None, module_output_name="scores")]
    >>> model = PooledScoreModel(encoder, ("cls",), steps)  # doctest: +SKIP
    >>> model(**features).logits.shape  # doctest: +SKIP
    torch.Size([4, 1])
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.modeling_outputs import SequenceClassifierOutput

from raycross.unpadded_decoder import packed_last_hidden, supports_packed

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# the module types sentence-transformers 6.2 writes in modules.json
POOLING_TYPE = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
DENSE_TYPE = "sentence_transformers.base.modules.dense.Dense"
NORMALIZE_TYPE = "sentence_transformers.base.modules.normalize.Normalize"
_LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                        "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                        "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    """The pooling modes of a (new or legacy ``pooling_mode_*``) sentence-transformers Pooling config.

    Example:
        >>> pooling_modes({"pooling_mode": "lasttoken"}), pooling_modes({"pooling_mode_cls_token": True})
        (('lasttoken',), ('cls',))
    """
    mode = config.get("pooling_mode")
    if mode is None:
        modes = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)) or ("mean",)
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    for m in modes:
        if m not in POOLING_MODES:
            raise ValueError(f"pooling_mode: expected modes from {POOLING_MODES}, found {m!r}")
    return modes


def pool(hidden: Tensor, mask: Tensor, modes: Sequence[str]) -> Tensor:
    """Pooled embeddings (batch, len(modes) * hidden) of token embeddings, as sentence-transformers' Pooling
    computes them on padded inputs (left or right padding); the modes' outputs are concatenated in order.

    Example:
        >>> pool(torch.ones(2, 3, 4), torch.tensor([[1, 1, 0], [0, 1, 1]]), ["mean", "lasttoken"]).shape
        torch.Size([2, 8])
    """
    accumulate = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    batch, width, size = hidden.shape
    outputs = []
    for mode in modes:
        if mode == "cls":  # the first real token
            first = mask.to(torch.int).argmax(dim=1)
            outputs.append(hidden[torch.arange(batch, device=hidden.device), first])
        elif mode == "max":
            outputs.append(hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            total = (hidden * weights).sum(dim=1, dtype=accumulate)
            count = weights.sum(dim=1, dtype=accumulate).clamp(min=1e-9)
            outputs.append((total / (count if mode == "mean" else count.sqrt())).to(hidden.dtype))
        elif mode == "weightedmean":  # weights 1, 2, ... from the first real token
            weights = torch.arange(1, width + 1, device=hidden.device, dtype=accumulate).view(1, -1, 1)
            weights = weights - mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1)
            weighted = mask.unsqueeze(-1).to(accumulate) * weights
            total = (hidden * weighted).sum(dim=1)
            outputs.append((total / weighted.sum(dim=1).clamp(min=1e-9)).to(hidden.dtype))
        elif mode == "lasttoken":  # the last real token
            found, from_end = mask.flip(1).max(dim=1)
            from_end = torch.where(found == 0, width - 1, from_end)
            last = width - from_end - 1
            outputs.append((hidden * mask.unsqueeze(-1).to(hidden.dtype))[torch.arange(batch, device=hidden.device), last])
        else:
            raise ValueError(f"pooling mode: expected one of {POOLING_MODES}, found {mode!r}")
    return torch.cat(outputs, dim=-1)


def _activation(path: str | None, trust_remote_code: bool, where: str) -> nn.Module:
    if path is None:
        return nn.Tanh()  # sentence-transformers' Dense default
    if not (path.startswith("torch.") or trust_remote_code):
        raise ValueError(f"{where}: activation_function {path!r} is not a torch class; load with trust_remote_code=True")
    module, _, name = path.rpartition(".")
    activation = getattr(importlib.import_module(module), name)()
    if not isinstance(activation, nn.Module):
        raise TypeError(f"{where}: activation_function {path!r} is not a torch.nn.Module class")
    return activation


def _fullname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class Dense(nn.Module):
    """``features[output] = activation(linear(features[input]))`` (+ a residual), as sentence-transformers' Dense.

    Example:
        >>> Dense(4, 1, activation_function=None, module_output_name="scores")({"sentence_embedding": torch.ones(2, 4)})["scores"].shape
        torch.Size([2, 1])
    """

    st_type = DENSE_TYPE

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation_function: nn.Module | None = None, module_input_name: str = "sentence_embedding",
                 module_output_name: str | None = None, use_residual: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features, self.bias = int(in_features), int(out_features), bool(bias)
        self.activation_function = nn.Identity() if activation_function is None else activation_function
        self.linear = nn.Linear(self.in_features, self.out_features, bias=self.bias)
        self.module_input_name = module_input_name
        self.module_output_name = module_output_name or module_input_name
        self.use_residual = bool(use_residual)
        if self.use_residual and self.in_features != self.out_features:
            self.residual = nn.Linear(self.in_features, self.out_features, bias=False)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = features[self.module_input_name]
        out = self.activation_function(self.linear(x))
        if self.use_residual:
            out = out + (x if self.in_features == self.out_features else self.residual(x))
        features[self.module_output_name] = out
        return features

    def get_config_dict(self) -> dict[str, Any]:
        config = {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias,
                  "activation_function": _fullname(self.activation_function),
                  "module_input_name": self.module_input_name, "module_output_name": self.module_output_name}
        if self.use_residual:  # omitted at its default, as sentence-transformers writes it
            config["use_residual"] = True
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], trust_remote_code: bool, where: str) -> Dense:
        known = {"in_features", "out_features", "bias", "module_input_name", "module_output_name", "use_residual"}
        activation = _activation(config.get("activation_function"), trust_remote_code, where)
        return cls(activation_function=activation, **{k: v for k, v in config.items() if k in known})


class Normalize(nn.Module):
    """L2-normalizes ``features[input]`` into ``features[output]`` (sentence-transformers' Normalize)."""

    st_type = NORMALIZE_TYPE

    def __init__(self, module_input_name: str = "sentence_embedding", module_output_name: str | None = None) -> None:
        super().__init__()
        self.module_input_name = module_input_name
        self.module_output_name = module_output_name or module_input_name

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.module_input_name in features:
            features[self.module_output_name] = F.normalize(features[self.module_input_name], p=2, dim=-1)
        return features

    def get_config_dict(self) -> dict[str, Any]:
        return {"module_input_name": self.module_input_name, "module_output_name": self.module_output_name}


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf8") as f:
        return json.load(f)


def _load_weights(module: nn.Module, directory: Path) -> None:
    if (directory / WEIGHTS_FILE).is_file():
        from safetensors.torch import load_file

        state = load_file(str(directory / WEIGHTS_FILE))
    elif (directory / "pytorch_model.bin").is_file():
        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"{directory}: a Dense module without weights ({WEIGHTS_FILE} or pytorch_model.bin)")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{directory}: Dense weights do not match its config: missing {missing}, unexpected {unexpected}")


class PooledScoreModel(nn.Module):
    """A transformers base model (``AutoModel``), a pooling and the Dense/Normalize steps writing ``"scores"``.

    Looks like a transformers sequence classifier to the rest of raycross: ``config`` is the transformer's,
    ``forward(input_ids, attention_mask, ...)`` returns ``.logits`` (batch, num_labels), ``save_pretrained`` writes
    the sentence-transformers module directories (the transformer at the root, ``1_Pooling``, ``2_Dense``, ...).

    Example:
        >>> PooledScoreModel.from_directory(encoder, "saved", ("lasttoken",), specs)  # doctest: +SKIP
    """

    def __init__(self, encoder: nn.Module, modes: Sequence[str], steps: Sequence[nn.Module],
                 include_prompt: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        pooler = getattr(encoder, "pooler", None)
        if isinstance(pooler, nn.Module):
            # BERT-style encoders' own pooler is off the score path (the chain reads last_hidden_state): frozen, so
            # DDP sees no parameter without a gradient; sentence-transformers never changes it either
            pooler.requires_grad_(False)
        self.modes = tuple(modes)
        self.include_prompt = include_prompt
        self.steps = nn.ModuleList(steps)
        scoring = [s for s in self.steps if isinstance(s, Dense) and s.module_output_name == "scores"]
        if not scoring:
            raise ValueError(f"steps: no Dense step writes 'scores' (found {[type(s).__name__ for s in self.steps]})")

    @property
    def config(self) -> Any:
        return self.encoder.config

    @property
    def num_labels(self) -> int:
        """Outputs of the Dense writing ``"scores"`` (sentence-transformers' ``CrossEncoder.num_labels``)."""
        return next(s.out_features for s in reversed(self.steps) if isinstance(s, Dense) and s.module_output_name == "scores")

    @property
    def embedding_dimension(self) -> int:
        return int(self.encoder.config.hidden_size) * len(self.modes)

    @property
    def model(self) -> nn.Module:
        """The transformer (the decoder of a ``*ForCausalLM`` is ``.model`` too: :mod:`raycross.unpadded_decoder`)."""
        return self.encoder

    def can_pack(self) -> bool:
        """True when :meth:`forward` with ``packed=True`` runs the real tokens only: last-token pooling on a
        decoder family of :mod:`raycross.unpadded_decoder` (same scores within float rounding)."""
        return self.modes == ("lasttoken",) and supports_packed(self)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, return_dict: bool = True,
                packed: bool = False, **kwargs: Any) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if packed and not kwargs and self.can_pack():  # the last real token's hidden state, padding-free
            features = {"attention_mask": attention_mask,
                        "sentence_embedding": packed_last_hidden(self.encoder, input_ids, attention_mask)}
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True,
                                  **kwargs).last_hidden_state
            features = {"token_embeddings": hidden, "attention_mask": attention_mask,
                        "sentence_embedding": pool(hidden, attention_mask, self.modes)}
        for step in self.steps:
            features = step(features)
        return SequenceClassifierOutput(logits=features["scores"])

    # ------------------------------------------------------------------ what the trainer asks of a transformers model
    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.encoder.gradient_checkpointing_enable(**kwargs)

    def activation_checkpointing_enable(self, **kwargs: Any) -> None:
        """transformers >= 5 name of :meth:`gradient_checkpointing_enable` (keyword names mapped)."""
        enable = getattr(self.encoder, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(**kwargs)
        else:
            self.encoder.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=kwargs.get("activation_checkpointing_kwargs"))

    def gradient_checkpointing_disable(self) -> None:
        self.encoder.gradient_checkpointing_disable()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    # ------------------------------------------------------------------ saving and loading
    def module_entries(self) -> list[tuple[str, str]]:
        """(modules.json type, folder) of the modules after the transformer, in order."""
        entries = [(POOLING_TYPE, "1_Pooling")]
        entries += [(step.st_type, f"{i + 2}_{type(step).__name__}") for i, step in enumerate(self.steps)]
        return entries

    def save_pretrained(self, path: str | Path, state_dict: dict[str, Tensor] | None = None,
                        safe_serialization: bool = True, **kwargs: Any) -> None:
        """The transformer at `path` (transformers layout), the pooling and each step in its own folder."""
        from safetensors.torch import save_file

        path = Path(path)
        state_dict = self.state_dict() if state_dict is None else state_dict
        encoder_state = {k[len("encoder."):]: v for k, v in state_dict.items() if k.startswith("encoder.")}
        self.encoder.save_pretrained(path, state_dict=encoder_state, safe_serialization=safe_serialization, **kwargs)
        (_, pooling_dir), *step_entries = self.module_entries()
        (path / pooling_dir).mkdir(parents=True, exist_ok=True)
        mode = self.modes[0] if len(self.modes) == 1 else list(self.modes)
        with open(path / pooling_dir / CONFIG_FILE, "w", encoding="utf8") as f:
            json.dump({"embedding_dimension": int(self.encoder.config.hidden_size), "pooling_mode": mode,
                       "include_prompt": self.include_prompt}, f, indent=4)
        for i, (step, (_, folder)) in enumerate(zip(self.steps, step_entries)):
            (path / folder).mkdir(parents=True, exist_ok=True)
            with open(path / folder / CONFIG_FILE, "w", encoding="utf8") as f:
                json.dump(step.get_config_dict(), f, indent=4)
            prefix = f"steps.{i}."
            weights = {k[len(prefix):]: v.detach().contiguous().cpu() for k, v in state_dict.items() if k.startswith(prefix)}
            if weights:
                if safe_serialization:
                    save_file(weights, str(path / folder / WEIGHTS_FILE))
                else:
                    torch.save(weights, path / folder / "pytorch_model.bin")

    def load_saved_weights(self, directory: str | Path) -> None:
        """Load what :meth:`save_pretrained` wrote in `directory` into this model (in place)."""
        from raycross.training.checkpoints import load_model_weights

        directory = Path(directory)
        load_model_weights(self.encoder, directory)
        for step, (_, folder) in zip(self.steps, self.module_entries()[1:]):
            if any(True for _ in step.parameters()):
                _load_weights(step, directory / folder)

    @classmethod
    def from_directory(cls, encoder: nn.Module, directory: str | Path, pooling_dir: str,
                       step_dirs: Sequence[tuple[str, str]], trust_remote_code: bool = False) -> PooledScoreModel:
        """Build the chain saved in `directory`: the pooling config in `pooling_dir`, then each (kind, folder)
        of `step_dirs` (kind "Dense" or "Normalize") with its config and weights.

        Example:
            >>> PooledScoreModel.from_directory(encoder, "m", "1_Pooling", [("Dense", "2_Dense")])  # doctest: +SKIP
        """
        directory = Path(directory)
        pooling_config = _read_json(directory / pooling_dir / CONFIG_FILE) if (directory / pooling_dir / CONFIG_FILE).is_file() else {}
        where = directory / pooling_dir / CONFIG_FILE
        hidden = int(encoder.config.hidden_size)
        saved_dim = pooling_config.get("embedding_dimension", pooling_config.get("word_embedding_dimension", hidden))
        if saved_dim != hidden:
            raise ValueError(f"{where}: embedding_dimension={saved_dim}, but the transformer's hidden_size is {hidden}")
        steps: list[nn.Module] = []
        for kind, folder in step_dirs:
            config_path = directory / folder / CONFIG_FILE
            config = _read_json(config_path) if config_path.is_file() else {}
            if kind == "Dense":
                step = Dense.from_config(config, trust_remote_code, str(config_path))
                _load_weights(step, directory / folder)
            else:
                step = Normalize(**{k: v for k, v in config.items() if k in ("module_input_name", "module_output_name")})
            steps.append(step)
        dtype = next(encoder.parameters()).dtype  # e.g. model_kwargs={"dtype": "bfloat16"}: the head follows
        return cls(encoder, pooling_modes(pooling_config), [step.to(dtype) for step in steps],
                   bool(pooling_config.get("include_prompt", True)))
