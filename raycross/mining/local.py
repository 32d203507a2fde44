"""The in-process runner for small inputs: same block functions as the Ray runner, one process, tqdm progress."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from raycross.mining.blocks import BlockContext, ResultCollector, finish_block, rescore_block, search_block
from raycross.mining.encoders import LoadedEncoder
from raycross.mining.index import IndexSpec, Searcher

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


def run_local(
    ctx: BlockContext,
    collector: ResultCollector,
    index_spec: IndexSpec,
    corpus_emb: np.ndarray,
    queries: pa.Array,
    corpus: pa.Array,
    query_emb: np.ndarray | None,
    encoder: LoadedEncoder | None,
    cross_encoder: Any,
    rescore_batch_size: int,
    block_size: int,
    verbose: bool,
    device: str = "cpu",
) -> None:
    """Search, (rescore,) select block by block; results go to `collector`."""
    searcher = Searcher(index_spec, corpus_emb, device=device)
    order = length_order(queries) if query_emb is None else np.arange(len(queries))
    desc = "Mining" if cross_encoder is None else "Mining and rescoring"
    for start in tqdm(range(0, len(order), block_size), desc=desc, disable=not verbose):
        q_ids = np.sort(order[start : start + block_size])
        if query_emb is None:
            q_emb = encoder(queries.take(pa.array(q_ids)).to_pylist(), "query")
        else:
            q_emb = np.asarray(query_emb[q_ids])
        block = search_block(ctx, searcher, q_ids, q_emb)
        if cross_encoder is not None:
            block = rescore_block(ctx, cross_encoder, queries, corpus, block, rescore_batch_size)
        collector.add(finish_block(ctx, block))
