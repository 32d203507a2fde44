"""A validated mining run: what the local and the Ray runners share, and the on-disk embedding cache."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raycross.mining.encoders import EncoderSpec, cache_file, load_cached
from raycross.mining.index import IndexSpec
from raycross.mining.inputs import MiningInputs
from raycross.mining.options import MiningOptions

logger = logging.getLogger(__name__)


@dataclass
class EmbeddingCache:
    """``corpus_embeddings_{hash}.npy`` / ``query_embeddings_{hash}.npy`` in a folder (or no cache at all).

    Example:
        >>> cache = EmbeddingCache.create("/tmp/emb", spec, inputs)  # doctest: +SKIP
        >>> cache.load("query") is None  # doctest: +SKIP
        True
    """

    paths: dict[str, Path]
    sizes: dict[str, int]

    @classmethod
    def create(cls, folder: str | os.PathLike | None, spec: EncoderSpec, inputs: MiningInputs) -> EmbeddingCache:
        if folder is None:
            return cls({}, {})
        Path(folder).mkdir(parents=True, exist_ok=True)
        texts = {"document": inputs.corpus, "query": inputs.queries}
        return cls(
            {role: cache_file(folder, spec, role, t) for role, t in texts.items()},
            {role: len(t) for role, t in texts.items()},
        )

    @property
    def enabled(self) -> bool:
        return bool(self.paths)

    def load(self, role: str) -> np.ndarray | None:
        """The cached embeddings of a role (memory-mapped), or None."""
        return load_cached(self.paths[role], self.sizes[role]) if self.enabled else None

    def save(self, role: str, emb: np.ndarray) -> None:
        if not self.enabled:
            return
        path = self.paths[role]
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, path)  # readers never see a half-written file
        logger.info("Saved embeddings to %s", path)


@dataclass
class MiningRun:
    """Validated inputs and settings of one `mine_hard_negatives` call, handed to a runner."""

    opts: MiningOptions
    inputs: MiningInputs
    spec: EncoderSpec
    cache: EmbeddingCache
    cross_encoder: Any  # set only when it rescores (a filter is set)
    batch_size: int
    rescore_batch_size: int
    max_block: int  # faiss_batch_size: most queries searched at once
    index_type: str
    use_faiss: bool | None
    ivf_nlist: int | None
    ivf_nprobe: int
    verbose: bool

    def build_index(self, corpus_emb: np.ndarray) -> IndexSpec:
        return IndexSpec.build(
            corpus_emb, self.index_type, self.use_faiss, self.ivf_nlist, self.ivf_nprobe, self.opts.seed
        )
