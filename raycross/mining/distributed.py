"""The Ray Data runner: embedding, search and cross-encoder rescoring as actor pools.

Flow: corpus texts -> embed pool -> driver fills the corpus matrix -> object store (shared read-only by
every search actor: the exact index is the matrix itself; an IVF index travels serialized). Queries
stream through embed pool -> search pool (search + filter + sample) [-> rescore pool] -> compact
per-query results (ids and scores only) to the driver. GPU actors when the cluster has GPUs, fractional
CPUs otherwise. No stage ever holds a queries x corpus matrix.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raycross.mining.blocks import (
    BlockContext,
    ResultCollector,
    finish_block,
    rescore_block,
    search_block,
    worker_threads,
)
from raycross.mining.index import Searcher
from raycross.mining.local import length_order
from raycross.mining.plan import MiningRun

logger = logging.getLogger(__name__)


class Shared:
    """An object-store reference passed to actor constructors inside a wrapper.

    A top-level ObjectRef argument is not kept alive for actor restarts (ray-project/ray#53727); a
    reference nested in an argument is owned by the actor's creation spec, so a pool actor that
    (re)starts late still finds the object.
    """

    def __init__(self, value: Any) -> None:
        import ray

        self.ref = ray.put(value)


def _resolve(value: Any) -> Any:
    import ray

    if isinstance(value, Shared):
        value = value.ref
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


@contextlib.contextmanager
def quiet_progress(verbose: bool) -> Iterator[None]:
    """Ray Data progress bars and execution banners only when verbose (the setting is restored after)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.print_on_execution_start
    if not verbose:
        ctx.enable_progress_bars, ctx.print_on_execution_start = False, False
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved


def _set_threads(threads: int) -> None:
    """Cap torch's intra-op threads if torch is loaded (search actors never import it: less memory, and no
    second OpenMP runtime next to FAISS's)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Resources:
    """Actor pool size and per-actor resources of the mining stages.

    Example:
        >>> Resources.detect(num_workers=2, use_gpu=False).cpus
        0.5
    """

    num_workers: int
    use_gpu: bool
    cpus: float = 0.5

    @classmethod
    def detect(cls, num_workers: int | None, use_gpu: bool | None, cpus_per_worker: float | None = None) -> Resources:
        import ray

        cluster = ray.cluster_resources() if ray.is_initialized() else {}
        n_gpus = int(cluster.get("GPU", 0))
        if use_gpu is None:
            use_gpu = n_gpus > 0
        if use_gpu and ray.is_initialized() and n_gpus == 0:
            raise ValueError("use_gpu=True but the Ray cluster has no GPUs")
        if num_workers is None:
            num_workers = n_gpus if use_gpu else max(1, min(8, int(cluster.get("CPU", 2)) // 2))
        return cls(num_workers=num_workers, use_gpu=bool(use_gpu), cpus=cpus_per_worker or (1.0 if use_gpu else 0.5))

    def remote_args(self, gpu_share: float) -> dict[str, Any]:
        """map_batches resources: a GPU share for GPU stages (several stages share a GPU), else fractional CPUs."""
        from ray.data import ActorPoolStrategy

        args: dict[str, Any] = {"compute": ActorPoolStrategy(size=self.num_workers), "num_cpus": self.cpus}
        if self.use_gpu:
            args["num_gpus"] = gpu_share
        return args

    @property
    def device(self) -> str:
        return "cuda" if self.use_gpu else "cpu"


class EmbedActor:
    """Ray Data actor: {"id", "text"} -> {"id", "embedding"} with the mining model."""

    def __init__(self, spec: Any, role: str, device: str, threads: int) -> None:
        self.encoder = _resolve(spec).load(device=None if device == "cpu" else device)
        _set_threads(threads)
        self.role = role

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        emb = self.encoder(batch.column("text").to_pylist(), self.role)
        return {"id": batch.column("id").to_numpy(), "embedding": emb}


class SearchActor:
    """Ray Data actor: {"id", "embedding"} (or {"id"} with cached query embeddings) -> candidates, or the
    selected negatives directly when no rescoring follows."""

    def __init__(
        self,
        ctx: Any,
        index_spec: Any,
        corpus_emb: Any,
        device: str,
        threads: int,
        finish: bool,
        query_emb: Any = None,
    ) -> None:
        _set_threads(threads)
        self.ctx: BlockContext = _resolve(ctx)
        self.searcher = Searcher(_resolve(index_spec), _resolve(corpus_emb), device=device, threads=threads)
        self.query_emb = _resolve(query_emb)
        self.finish = finish

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        q_ids = np.asarray(batch["id"], dtype=np.int64)
        q_emb = batch["embedding"] if self.query_emb is None else self.query_emb[q_ids]
        block = search_block(self.ctx, self.searcher, q_ids, q_emb)
        return finish_block(self.ctx, block) if self.finish else block


class RescoreActor:
    """Ray Data actor: candidates -> cross-encoder scores (one batched predict per block) -> negatives."""

    def __init__(
        self, ctx: Any, cross_encoder: Any, queries: Any, corpus: Any, device: str, threads: int, batch_size: int
    ) -> None:
        from raycross.mining.local import load_cross_encoder

        self.ctx: BlockContext = _resolve(ctx)
        self.model = load_cross_encoder(_resolve(cross_encoder), device)
        _set_threads(threads)
        self.queries = _resolve(queries)
        self.corpus = _resolve(corpus)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        block = {k: np.asarray(v) for k, v in batch.items()}
        return finish_block(
            self.ctx, rescore_block(self.ctx, self.model, self.queries, self.corpus, block, self.batch_size)
        )


def _text_blocks(texts: pa.Array, rows_per_block: int, ids: np.ndarray | None = None) -> list[pa.Table]:
    """Length-sorted {"id", "text"} tables of `rows_per_block` rows (one Ray block each)."""
    order = length_order(texts) if ids is None else ids
    blocks = []
    for start in range(0, len(order), rows_per_block):
        idx = order[start : start + rows_per_block]
        blocks.append(pa.table({"id": pa.array(idx, pa.int64()), "text": texts.take(pa.array(idx)).cast(pa.string())}))
    return blocks


def rows_per_block(n: int, res: Resources, batch_size: int, cap: int = 16384) -> int:
    """Enough blocks for every worker to get several, each a multiple of the encode batch size."""
    rows = math.ceil(n / max(1, res.num_workers * 8))
    rows = math.ceil(rows / batch_size) * batch_size
    return int(min(max(rows, batch_size * 4), cap))


def embed_ray(
    spec_ref: Any, texts: pa.Array, role: str, res: Resources, batch_size: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Embed all texts on the embed actor pool; the driver writes rows into `out` as they stream back."""
    import ray

    block_rows = rows_per_block(len(texts), res, batch_size)
    ds = ray.data.from_arrow(_text_blocks(texts, block_rows)).map_batches(
        EmbedActor,
        batch_size=block_rows,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "spec": spec_ref,
            "role": role,
            "device": res.device,
            "threads": worker_threads(res.num_workers),
        },
        **res.remote_args(gpu_share=1.0),
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        emb = np.asarray(batch["embedding"], dtype=np.float32)
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[np.asarray(batch["id"])] = emb
    if out is None:
        raise ValueError(f"no {role} texts to embed")
    return out


def run_ray(run: MiningRun, ctx: BlockContext, collector: ResultCollector, res: Resources) -> None:
    """Embed the corpus on the embed pool (or load it), share it, then stream the queries through
    embed -> search (+select) [-> rescore (+select)] actor pools into `collector`."""
    import ray

    inputs, cache = run.inputs, run.cache
    spec_ref = Shared(run.spec)
    with quiet_progress(run.verbose):
        corpus_emb, query_emb = cache.load("document"), cache.load("query")
        if corpus_emb is None:
            corpus_emb = embed_ray(spec_ref, inputs.corpus, "document", res, run.batch_size)
            cache.save("document", corpus_emb)
        if query_emb is None and cache.enabled:
            query_emb = embed_ray(spec_ref, inputs.queries, "query", res, run.batch_size)
            cache.save("query", query_emb)
        corpus_emb = np.ascontiguousarray(corpus_emb, dtype=np.float32)
        index_ref = Shared(run.build_index(corpus_emb))
        corpus_ref = Shared(corpus_emb)
        del corpus_emb  # the object store holds the one shared copy
        # Several blocks per worker for balance; large blocks keep the BLAS search efficient.
        block = int(min(run.max_block, max(256, -(-inputs.num_queries // (res.num_workers * 4)))))
        ctx_ref = Shared(ctx)
        rescoring = run.cross_encoder is not None
        streaming = query_emb is None
        pools = 1 + int(streaming) + int(rescoring)
        gpu_share = 1.0 / pools
        threads = worker_threads(res.num_workers, pools)

        if streaming:
            ds = ray.data.from_arrow(_text_blocks(inputs.queries, block)).map_batches(
                EmbedActor,
                batch_size=block,
                batch_format="pyarrow",
                fn_constructor_kwargs={"spec": spec_ref, "role": "query", "device": res.device, "threads": threads},
                **res.remote_args(gpu_share),
            )
            query_ref = None
        else:
            ids = np.arange(inputs.num_queries, dtype=np.int64)
            ds = ray.data.from_arrow([pa.table({"id": ids[s : s + block]}) for s in range(0, len(ids), block)])
            query_ref = Shared(np.ascontiguousarray(query_emb, dtype=np.float32))
        search_kwargs = {
            "ctx": ctx_ref,
            "index_spec": index_ref,
            "corpus_emb": corpus_ref,
            "device": res.device,
            "threads": threads,
            "finish": not rescoring,
            "query_emb": query_ref,
        }
        ds = ds.map_batches(
            SearchActor,
            batch_size=block,
            batch_format="numpy",
            fn_constructor_kwargs=search_kwargs,
            **res.remote_args(gpu_share),
        )
        if rescoring:
            rescore_kwargs = {
                "ctx": ctx_ref,
                "cross_encoder": Shared(run.cross_encoder),
                "queries": Shared(inputs.queries),
                "corpus": Shared(inputs.corpus),
                "device": res.device,
                "threads": threads,
                "batch_size": run.rescore_batch_size,
            }
            ds = ds.map_batches(
                RescoreActor,
                batch_size=block,
                batch_format="numpy",
                fn_constructor_kwargs=rescore_kwargs,
                **res.remote_args(gpu_share),
            )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            collector.add(batch)
