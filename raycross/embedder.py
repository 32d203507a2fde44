"""Embedder: a bi-encoder (HF encoder + pooling + optional Dense + normalization) used for mining.

Reads plain HF encoder directories and the sentence-transformers layout (``modules.json``,
``1_Pooling/config.json``, ``*_Dense``, ``sentence_bert_config.json``, prompts from
``config_sentence_transformers.json``) without importing sentence-transformers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Module types of the sentence-transformers layout, matched on the last dotted name.
_KNOWN_MODULES = {"Transformer", "Pooling", "Normalize", "Dense"}
QUERY_PROMPT_NAMES = ("query",)
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


def _read_json(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pooling_from_config(config: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    """Pooling modes and include_prompt from a (new or legacy) sentence-transformers pooling config."""
    mode = config.get("pooling_mode")
    if mode is None:
        modes = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key, False)) or ("mean",)
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    for m in modes:
        if m not in POOLING_MODES:
            raise ValueError(f"pooling config: expected pooling modes from {POOLING_MODES}, found {m!r}")
    return modes, bool(config.get("include_prompt", True))


class Embedder:
    """A bi-encoder producing (by default L2-normalized) sentence embeddings for hard-negative mining.

    Loads a local directory or a hub id. With a sentence-transformers layout the pooling, Dense
    layers, normalization, max length, lower-casing and prompts follow the saved configuration;
    a plain encoder directory gets mean pooling. Embeddings are normalized unless ``normalize=False``.

    Args:
        model_name_or_path: directory or hub id of an HF encoder (optionally in the sentence-transformers layout).
        pooling: override the pooling mode ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken").
        normalize: L2-normalize the embeddings (mining compares them by inner product).
        max_length: truncation length in tokens; defaults to the saved one or the model's limit.
        device: "cpu", "cuda", ... (default: cuda when available).
        prompts: extra named prompts (merged over the saved ones), e.g. ``{"query": "query: "}``.
        default_prompt_name: prompt applied when no other prompt is given.

    Example:
        >>> from raycross import Embedder
        >>> embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> embedder.encode(["a cat", "a dog"]).shape  # doctest: +SKIP
        (2, 384)
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        pooling: str | None = None,
        normalize: bool = True,
        max_length: int | None = None,
        device: str | None = None,
        prompts: Mapping[str, str] | None = None,
        default_prompt_name: str | None = None,
        trust_remote_code: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not isinstance(model_name_or_path, (str, Path)):
            raise TypeError(f"model_name_or_path: expected a path or hub id, found {type(model_name_or_path).__name__}")
        if pooling is not None and pooling not in POOLING_MODES:
            raise ValueError(f"pooling: expected one of {POOLING_MODES}, found {pooling!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length: expected a positive integer, found {max_length!r}")
        self.model_name_or_path = str(model_name_or_path)
        self._local = Path(self.model_name_or_path).expanduser()
        self._is_local = self._local.is_dir()
        if not self._is_local and (self.model_name_or_path.startswith((".", "/", "~")) or self._local.exists()):
            raise ValueError(
                f"model_name_or_path={self.model_name_or_path!r}: not a model directory (and not a hub id)"
            )

        modules = _read_json(self._file("modules.json"))
        transformer_dir, pooling_dir, dense_dirs, has_normalize = "", None, [], False
        if modules is not None:
            for module in sorted(modules, key=lambda m: m.get("idx", 0)):
                kind = str(module.get("type", "")).rsplit(".", 1)[-1]
                if kind not in _KNOWN_MODULES:
                    raise ValueError(
                        f"{self.model_name_or_path}/modules.json: module type {module.get('type')!r} is not supported "
                        f"(supported: {sorted(_KNOWN_MODULES)})"
                    )
                path = module.get("path", "")
                if kind == "Transformer":
                    transformer_dir = path
                elif kind == "Pooling":
                    pooling_dir = path
                elif kind == "Dense":
                    dense_dirs.append(path)
                else:
                    has_normalize = True
        self.has_st_layout = modules is not None

        sbert = _read_json(self._file("sentence_bert_config.json", transformer_dir)) or {}
        pool_cfg = _read_json(self._file("config.json", pooling_dir)) if pooling_dir is not None else None
        modes, include_prompt = _pooling_from_config(pool_cfg) if pool_cfg else (("mean",), True)
        self.pooling_modes: tuple[str, ...] = (pooling,) if pooling is not None else modes
        self.include_prompt = include_prompt
        self.normalize = bool(normalize)
        self.do_lower_case = bool(sbert.get("do_lower_case", False))

        st_config = _read_json(self._file("config_sentence_transformers.json")) or {}
        self.prompts: dict[str, str] = {k: v for k, v in (st_config.get("prompts") or {}).items() if v is not None}
        self.prompts.update(prompts or {})
        self.default_prompt_name = default_prompt_name or st_config.get("default_prompt_name")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"default_prompt_name={self.default_prompt_name!r} is not in prompts {sorted(self.prompts)}"
            )

        source = str(self._local / transformer_dir) if self._is_local else self.model_name_or_path
        sub = {} if self._is_local or not transformer_dir else {"subfolder": transformer_dir}
        self.tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=trust_remote_code, **sub, **dict(tokenizer_kwargs or {})
        )
        self.model = AutoModel.from_pretrained(
            source, trust_remote_code=trust_remote_code, **sub, **dict(model_kwargs or {})
        )
        self.model.eval()
        self.dense = torch.nn.ModuleList(self._load_dense(d) for d in dense_dirs)
        self.max_length = max_length or self._default_max_length(sbert)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.dense.to(self.device)
        if has_normalize and not self.normalize:
            logger.info(
                "%s has a Normalize module but normalize=False: embeddings are left unnormalized",
                self.model_name_or_path,
            )

    # ------------------------------------------------------------------ loading helpers
    def _file(self, name: str, subdir: str | None = "") -> Path | None:
        """Local path of an optional file of the model (downloaded from the hub for hub ids), or None."""
        rel = f"{subdir}/{name}" if subdir else name
        if self._is_local:
            path = self._local / rel
            return path if path.is_file() else None
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(self.model_name_or_path, rel))
        except Exception:  # optional file: absent on the hub, or offline
            return None

    def _default_max_length(self, sbert: Mapping[str, Any]) -> int:
        if isinstance(sbert.get("max_seq_length"), int):
            return int(sbert["max_seq_length"])
        limits = [getattr(self.model.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        if getattr(self.model.config, "model_type", None) in ("roberta", "xlm-roberta", "camembert") and limits:
            limits[0] -= 2  # RoBERTa-style positions are offset by padding_idx + 1
        return min(limits) if limits else 512

    def _load_dense(self, subdir: str):
        import torch

        config = _read_json(self._file("config.json", subdir))
        if config is None:
            raise ValueError(f"{self.model_name_or_path}/{subdir}: Dense module without config.json")
        activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
        if not str(activation).startswith("torch."):
            raise ValueError(
                f"{self.model_name_or_path}/{subdir}: activation_function {activation!r} is not a torch class"
            )
        module_path, _, name = activation.rpartition(".")
        act = getattr(__import__(module_path, fromlist=[name]), name)()
        linear = torch.nn.Linear(config["in_features"], config["out_features"], bias=config.get("bias", True))
        weights = self._file("model.safetensors", subdir)
        if weights is not None:
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            weights = self._file("pytorch_model.bin", subdir)
            if weights is None:
                raise ValueError(f"{self.model_name_or_path}/{subdir}: Dense module without weights")
            state = torch.load(weights, map_location="cpu", weights_only=True)
        linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items() if k.startswith("linear.")})
        return torch.nn.Sequential(linear, act)

    # ------------------------------------------------------------------ properties
    @property
    def embedding_dim(self) -> int:
        """Size of the output embeddings."""
        dim = self.dense[-1][0].out_features if len(self.dense) else self.model.config.hidden_size
        return dim if len(self.dense) else dim * len(self.pooling_modes)

    @property
    def identity(self) -> str:
        """A string naming the model and its embedding settings (used to key embedding caches)."""
        return f"{self.model_name_or_path}|{','.join(self.pooling_modes)}|norm={self.normalize}|max={self.max_length}"

    def to(self, device: str) -> Embedder:
        """Move the model to a device; returns self."""
        import torch

        self.device = torch.device(device)
        self.model.to(self.device)
        self.dense.to(self.device)
        return self

    # ------------------------------------------------------------------ prompts
    def resolve_prompt(self, prompt: str | None, prompt_name: str | None, role: str | None = None) -> str | None:
        """The prompt text to prepend: an explicit prompt, a named one, the role's default, or None.

        ``role`` "query" picks the "query" prompt and "document" the first of "document"/"passage"/"corpus"
        when nothing else is given (as sentence-transformers' encode_query/encode_document).
        """
        if prompt is not None:
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(
                    f"prompt_name={prompt_name!r} is not one of the model's prompts {sorted(self.prompts)}"
                )
            return self.prompts[prompt_name]
        names = QUERY_PROMPT_NAMES if role == "query" else DOCUMENT_PROMPT_NAMES if role == "document" else ()
        for name in names:
            if name in self.prompts:
                return self.prompts[name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name)
        return None

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        prompt: str | None = None,
        prompt_name: str | None = None,
        show_progress_bar: bool = False,
        role: str | None = None,
    ) -> np.ndarray:
        """Embed texts in length-sorted batches; returns float32 (n, dim) in input order (a vector for one string).

        Example:
            >>> embedder.encode(["first text", "second"], batch_size=16).shape  # doctest: +SKIP
            (2, 384)
        """
        import torch
        from tqdm.auto import tqdm

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, found {batch_size!r}")
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected str, found {type(text).__name__}")
        prompt = self.resolve_prompt(prompt, prompt_name, role)
        if not texts:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        prompt_length = 0
        if prompt:
            texts = [prompt + t for t in texts]
            if not self.include_prompt:
                # Tokens of the prompt alone, minus the closing special token (as sentence-transformers).
                prompt_length = (
                    len(self.tokenizer(prompt, truncation=True, max_length=self.max_length)["input_ids"]) - 1
                )
        if self.do_lower_case:
            texts = [t.lower() for t in texts]

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in tqdm(range(0, len(texts), batch_size), desc="Embedding", disable=not show_progress_bar):
                idx = order[start : start + batch_size]
                features = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**features).last_hidden_state
                emb = self._pool(hidden, features["attention_mask"], prompt_length)
                for layer in self.dense:
                    emb = layer(emb)
                if self.normalize:
                    emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
                out[idx] = emb.float().cpu().numpy()
        return out[0] if single else out

    def encode_query(self, texts: Sequence[str] | str, **kwargs: Any) -> np.ndarray:
        """`encode` with the query prompt of the model when no prompt is given."""
        return self.encode(texts, role="query", **kwargs)

    def encode_document(self, texts: Sequence[str] | str, **kwargs: Any) -> np.ndarray:
        """`encode` with the document/passage/corpus prompt of the model when no prompt is given."""
        return self.encode(texts, role="document", **kwargs)

    def _pool(self, hidden, attention_mask, prompt_length: int):
        import torch

        mask = attention_mask
        if prompt_length:
            # Right padding: the prompt is the first tokens of every row.
            mask = mask.clone()
            mask[:, :prompt_length] = 0
        hidden = hidden.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        outputs = []
        for mode in self.pooling_modes:
            if mode == "cls":
                first = mask.to(torch.int).argmax(dim=1)
                outputs.append(hidden[torch.arange(hidden.size(0), device=hidden.device), first])
            elif mode == "max":
                outputs.append(hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values)
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                total = (hidden * weights).sum(dim=1)
                count = weights.sum(dim=1).clamp(min=1e-9)
                outputs.append(total / (count if mode == "mean" else count.sqrt()))
            elif mode == "weightedmean":
                positions = torch.arange(1, hidden.size(1) + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
                w = weights * positions
                outputs.append((hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9))
            else:  # lasttoken
                last = attention_mask.sum(dim=1) - 1
                outputs.append(hidden[torch.arange(hidden.size(0), device=hidden.device), last.clamp(min=0)])
        return torch.cat(outputs, dim=-1)

    def __repr__(self) -> str:
        return (
            f"Embedder({self.model_name_or_path!r}, pooling={'+'.join(self.pooling_modes)}, "
            f"normalize={self.normalize}, max_length={self.max_length}, dim={self.embedding_dim})"
        )
