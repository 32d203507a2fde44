"""The in-process runner for small inputs: same block functions as the Ray runner, one process, tqdm progress."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from raycross.mining.blocks import BlockContext, ResultCollector, finish_block, rescore_block, search_block
from raycross.mining.encoders import LoadedEncoder
from raycross.mining.index import Searcher
from raycross.mining.plan import MiningRun

logger = logging.getLogger(__name__)


def length_order(texts: pa.Array) -> np.ndarray:
    """Indices of texts from longest to shortest (stable), so batches pad little."""
    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    return np.argsort(-lengths, kind="stable")


def embed_all(
    encoder: LoadedEncoder,
    texts: pa.Array,
    role: str,
    out: np.ndarray | None = None,
    chunk: int = 4096,
    verbose: bool = True,
) -> np.ndarray:
    """Embed every text (length-sorted chunks) into `out` (allocated when None); rows follow `texts`."""
    order = length_order(texts)
    for start in tqdm(range(0, len(order), chunk), desc=f"Embedding {role}s", disable=not verbose):
        idx = order[start : start + chunk]
        emb = encoder(texts.take(pa.array(idx)).to_pylist(), role)
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[idx] = emb
    return out


def run_local(run: MiningRun, ctx: BlockContext, collector: ResultCollector, use_gpu: bool = False) -> None:
    """Embed (or load cached embeddings), then search, (rescore,) select block by block into `collector`."""
    inputs, cache, verbose = run.inputs, run.cache, run.verbose
    device = "cuda" if use_gpu else None
    corpus_emb, query_emb = cache.load("document"), cache.load("query")
    encoder = run.spec.load(device=device) if corpus_emb is None or query_emb is None else None
    if corpus_emb is None:
        corpus_emb = embed_all(encoder, inputs.corpus, "document", verbose=verbose)
        cache.save("document", corpus_emb)
    if query_emb is None and cache.enabled:
        query_emb = embed_all(encoder, inputs.queries, "query", verbose=verbose)
        cache.save("query", query_emb)
    corpus_emb = np.ascontiguousarray(corpus_emb, dtype=np.float32)
    searcher = Searcher(run.build_index(corpus_emb), corpus_emb, device=device or "cpu")
    cross_encoder = load_cross_encoder(run.cross_encoder, device) if run.cross_encoder is not None else None

    queries = inputs.queries
    order = length_order(queries) if query_emb is None else np.arange(len(queries))
    desc = "Mining" if cross_encoder is None else "Mining and rescoring"
    for start in tqdm(range(0, len(order), run.max_block), desc=desc, disable=not verbose):
        q_ids = np.sort(order[start : start + run.max_block])
        if query_emb is None:
            q_emb = encoder(queries.take(pa.array(q_ids)).to_pylist(), "query")
        else:
            q_emb = np.asarray(query_emb[q_ids])
        block = search_block(ctx, searcher, q_ids, q_emb)
        if cross_encoder is not None:
            block = rescore_block(ctx, cross_encoder, queries, inputs.corpus, block, run.rescore_batch_size)
        collector.add(finish_block(ctx, block))


def load_cross_encoder(cross_encoder: Any, device: str | None = None) -> Any:
    """A cross-encoder object from a path/hub id (raycross.CrossEncoder) or an existing model, on `device`."""
    if isinstance(cross_encoder, (str, os.PathLike)):
        from raycross.model import CrossEncoder

        return CrossEncoder(str(cross_encoder), device=device)
    if device is not None and device != "cpu" and hasattr(cross_encoder, "to"):
        cross_encoder.to(device)
    return cross_encoder
