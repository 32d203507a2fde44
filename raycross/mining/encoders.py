"""What `model` may be for mining (Embedder, path/hub id, sentence-transformers model, callable) and how a
worker turns it into normalized float32 embeddings; plus the on-disk embedding cache."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

logger = logging.getLogger(__name__)

ROLES = ("query", "document")


def _is_sentence_transformer(model: Any) -> bool:
    """A sentence-transformers model: ``encode`` (+ similarity, prompts), or a 6.x model that only offers
    ``encode_query`` / ``encode_document``."""
    if hasattr(model, "encode_query") and hasattr(model, "encode_document"):
        return True
    return hasattr(model, "encode") and hasattr(model, "similarity") and hasattr(model, "prompts")


@dataclass
class EncoderSpec:
    """A picklable description of the embedding model, loaded once per worker with `load()`.

    Example:
        >>> spec = EncoderSpec.create(lambda texts: np.ones((len(texts), 4)))
        >>> spec.load()(["a", "b"], role="query").shape
        (2, 4)
    """

    kind: str  # "embedder" | "path" | "sentence_transformers" | "callable"
    model: Any
    query_prompt: str | None = None
    query_prompt_name: str | None = None
    corpus_prompt: str | None = None
    corpus_prompt_name: str | None = None
    batch_size: int = 32

    @classmethod
    def create(
        cls,
        model: Any,
        query_prompt: str | None = None,
        query_prompt_name: str | None = None,
        corpus_prompt: str | None = None,
        corpus_prompt_name: str | None = None,
        batch_size: int = 32,
    ) -> EncoderSpec:
        """Classify `model` and check the prompt arguments against it (no weights are loaded for a path)."""
        from raycross.embedder import Embedder

        if isinstance(model, Embedder):
            kind = "embedder"
        elif isinstance(model, (str, os.PathLike)):
            kind, model = "path", str(model)
        elif _is_sentence_transformer(model):
            kind = "sentence_transformers"
        elif callable(model):
            kind = "callable"
        else:
            raise TypeError(
                "model: expected a raycross Embedder, a model path or hub id, a sentence-transformers model, or a "
                f"callable texts -> np.ndarray; found {type(model).__name__}"
            )
        for name, value in (("query_prompt", query_prompt), ("corpus_prompt", corpus_prompt)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name}: expected a string, found {type(value).__name__}")
        spec = cls(kind, model, query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name, batch_size)
        if kind == "callable":
            for name in ("query_prompt_name", "corpus_prompt_name"):
                if getattr(spec, name) is not None:
                    raise ValueError(f"{name}: a callable model has no named prompts; pass query_prompt/corpus_prompt")
        elif kind in ("embedder", "sentence_transformers"):
            prompts = getattr(model, "prompts", {}) or {}
            for name in ("query_prompt_name", "corpus_prompt_name"):
                value = getattr(spec, name)
                if value is not None and value not in prompts:
                    raise ValueError(f"{name}={value!r} is not one of the model's prompts {sorted(prompts)}")
        return spec

    def identity(self) -> str:
        """Names the model for the embedding cache key."""
        if self.kind == "embedder":
            return self.model.identity
        if self.kind == "path":
            return self.model
        if self.kind == "sentence_transformers":
            card = getattr(self.model, "model_card_data", None)
            return f"st:{getattr(card, 'base_model', None) or type(self.model).__name__}"
        fn = self.model
        return f"callable:{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"

    def prompt_args(self, role: str) -> tuple[str | None, str | None]:
        return (
            (self.query_prompt, self.query_prompt_name)
            if role == "query"
            else (self.corpus_prompt, self.corpus_prompt_name)
        )

    def load(self, device: str | None = None) -> LoadedEncoder:
        """Instantiate the model (in a worker): returns a callable `(texts, role) -> normalized float32 array`."""
        model = self.model
        if self.kind == "path":
            from raycross.embedder import Embedder

            model = Embedder(model, device=device)
        elif self.kind == "embedder" and device is not None:
            model.to(device)
        elif self.kind == "sentence_transformers" and device is not None:
            model.to(device)
        return LoadedEncoder(self, model)


class LoadedEncoder:
    """Embeds texts for a role ("query" or "document") with the spec's prompts; L2-normalized float32."""

    def __init__(self, spec: EncoderSpec, model: Any) -> None:
        self.spec = spec
        self.model = model

    def __call__(self, texts: list[str], role: str) -> np.ndarray:
        prompt, prompt_name = self.spec.prompt_args(role)
        kind = self.spec.kind
        if kind in ("embedder", "path"):
            emb = self.model.encode(
                texts, batch_size=self.spec.batch_size, prompt=prompt, prompt_name=prompt_name, role=role
            )
        elif kind == "sentence_transformers":
            method = getattr(self.model, "encode_query" if role == "query" else "encode_document", None)
            method = method or self.model.encode
            emb = method(
                texts,
                batch_size=self.spec.batch_size,
                prompt=prompt,
                prompt_name=prompt_name,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        else:
            inputs = [prompt + t for t in texts] if prompt else texts
            emb = self.model(inputs)
            if hasattr(emb, "detach"):  # a torch tensor
                emb = emb.detach().cpu().numpy()
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError(f"model: expected embeddings of shape ({len(texts)}, dim), found {emb.shape}")
        return normalize_rows(emb)


def normalize_rows(emb: np.ndarray) -> np.ndarray:
    """L2-normalize rows (zero rows stay zero), float32."""
    emb = np.array(emb, dtype=np.float32, copy=True)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    np.divide(emb, norms, out=emb, where=norms > 0)
    return emb


# ---------------------------------------------------------------------- embedding cache
def texts_fingerprint(texts: pa.Array, *parts: Any) -> str:
    """sha256 over `parts` and the texts, streamed in chunks (no full Python copy of the texts)."""
    h = hashlib.sha256(repr(parts).encode())
    for start in range(0, len(texts), 65536):
        chunk = texts.slice(start, 65536).to_pylist()
        h.update(len(chunk).to_bytes(8, "little"))
        for text in chunk:
            data = text.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()


def cache_file(cache_folder: str | os.PathLike, spec: EncoderSpec, role: str, texts: pa.Array) -> Path:
    """Path of the cached embeddings of `texts` for a role: ``{query|corpus}_embeddings_{hash}.npy``."""
    prompt, prompt_name = spec.prompt_args(role)
    key = texts_fingerprint(texts, spec.identity(), role, prompt, prompt_name)
    prefix = "query" if role == "query" else "corpus"
    return Path(cache_folder) / f"{prefix}_embeddings_{key}.npy"


def load_cached(path: Path, n: int) -> np.ndarray | None:
    """Memory-mapped cached embeddings, or None when absent or of the wrong length."""
    if not path.is_file():
        return None
    emb = np.load(path, mmap_mode="r")
    if emb.ndim != 2 or emb.shape[0] != n or emb.dtype != np.float32:
        logger.warning(
            "Ignoring cached embeddings %s: expected (%d, dim) float32, found %s %s", path, n, emb.shape, emb.dtype
        )
        return None
    logger.info("Loaded cached embeddings from %s (shape=%s)", path, emb.shape)
    return emb


EmbedFn = Callable[[list[str], str], np.ndarray]
