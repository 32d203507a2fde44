"""Nearest-neighbour search over the corpus embeddings: exact inner product (FAISS, or numpy without it),
an IVF option for very large corpora, and GPU search (faiss-gpu, else torch) in GPU workers.

The corpus matrix is shared read-only (zero-copy from the Ray object store); only an IVF index is
serialized and rebuilt per worker. Scores of the retrieved candidates are recomputed row by row, so
they do not depend on how queries were batched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

FAISS_GPU_MAX_K = 2048


def faiss_module():
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def faiss_gpu_count() -> int:
    faiss = faiss_module()
    return int(getattr(faiss, "get_num_gpus", lambda: 0)()) if faiss is not None else 0


@dataclass(frozen=True)
class IndexSpec:
    """How to search: "flat" (exact) or "ivf"; built once on the driver, shipped to the search workers.

    Example:
        >>> spec = IndexSpec.build(np.eye(4, dtype=np.float32), kind="flat")
        >>> Searcher(spec, np.eye(4, dtype=np.float32)).search(np.eye(4, dtype=np.float32)[:1], 2)[0].tolist()
        [[0, 1]]
    """

    kind: str = "flat"
    use_faiss: bool = True
    ivf_bytes: np.ndarray | None = None  # serialized faiss IVF index
    nprobe: int = 16

    @classmethod
    def build(
        cls,
        corpus_emb: np.ndarray,
        kind: str = "flat",
        use_faiss: bool | None = None,
        nlist: int | None = None,
        nprobe: int = 16,
        seed: int = 0,
    ) -> IndexSpec:
        faiss = faiss_module()
        if use_faiss and faiss is None:
            raise ImportError("use_faiss=True but faiss is not installed: pip install faiss-cpu (or faiss-gpu)")
        use_faiss = faiss is not None if use_faiss is None else bool(use_faiss)
        if kind == "flat":
            return cls("flat", use_faiss)
        if not use_faiss:
            raise ValueError("index_type='ivf' needs faiss (use_faiss must not be False)")
        n, dim = corpus_emb.shape
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        train = corpus_emb if n <= 256 * nlist else corpus_emb[np.sort(rng.choice(n, 256 * nlist, replace=False))]
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        for start in range(0, n, 65536):
            index.add(np.ascontiguousarray(corpus_emb[start : start + 65536], dtype=np.float32))
        logger.info("Built an IVF index: %d lists, nprobe=%d, %d vectors", nlist, nprobe, n)
        return cls("ivf", True, faiss.serialize_index(index), nprobe)


class Searcher:
    """Top-k inner-product search of query embeddings against the corpus (CPU or GPU).

    `search(q, k)` returns (ids int64 (n, k), scores float64 (n, k)); missing entries are -1 / -inf.
    """

    def __init__(
        self, spec: IndexSpec, corpus_emb: np.ndarray, device: str = "cpu", threads: int | None = None
    ) -> None:
        self.spec = spec
        self.corpus = corpus_emb
        self.device = device
        self.faiss = faiss_module() if spec.use_faiss else None
        if self.faiss is not None and threads:
            self.faiss.omp_set_num_threads(int(threads))
        self._index = None
        self._gpu_res = None
        if spec.kind == "ivf":
            index = self.faiss.deserialize_index(spec.ivf_bytes)
            index.nprobe = spec.nprobe
            if device != "cpu" and faiss_gpu_count() > 0:
                self._gpu_res = self.faiss.StandardGpuResources()
                index = self.faiss.index_cpu_to_gpu(self._gpu_res, 0, index)
            self._index = index
        elif device != "cpu" and self.faiss is not None and faiss_gpu_count() > 0:
            self._gpu_res = self.faiss.StandardGpuResources()
            index = self.faiss.GpuIndexFlatIP(self._gpu_res, corpus_emb.shape[1])
            index.add(np.ascontiguousarray(corpus_emb))
            self._index = index
        elif device != "cpu":
            import torch

            self._torch_corpus = torch.as_tensor(np.asarray(corpus_emb), device=device)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n_corpus = self.corpus.shape[0]
        k_eff = min(k, n_corpus)
        if self._index is not None and not (
            self._gpu_res is not None and k_eff > FAISS_GPU_MAX_K and self.spec.kind == "flat"
        ):
            _, ids = self._index.search(queries, k_eff)
        elif self.device != "cpu":
            ids = self._torch_topk(queries, k_eff)
        elif self.faiss is not None:
            _, ids = self.faiss.knn(queries, self.corpus, k_eff, metric=self.faiss.METRIC_INNER_PRODUCT)
        else:
            ids = numpy_topk(queries, self.corpus, k_eff)
        ids = ids.astype(np.int64, copy=False)
        if k_eff < k:
            ids = np.concatenate([ids, np.full((len(ids), k - k_eff), -1, dtype=np.int64)], axis=1)
        return ids, candidate_scores(queries, self.corpus, ids)

    def _torch_topk(self, queries: np.ndarray, k: int) -> np.ndarray:
        import torch

        corpus = getattr(self, "_torch_corpus", None)
        if corpus is None:
            corpus = self._torch_corpus = torch.as_tensor(np.asarray(self.corpus), device=self.device)
        out = []
        for start in range(0, len(queries), 1024):
            q = torch.as_tensor(queries[start : start + 1024], device=self.device)
            out.append(torch.topk(q @ corpus.T, k, dim=1).indices.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def numpy_topk(queries: np.ndarray, corpus: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """Exact top-k inner-product ids without FAISS, a block of queries at a time (bounded memory)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ corpus.T
        part = (
            np.argpartition(-sims, k - 1, axis=1)[:, :k]
            if k < sims.shape[1]
            else np.tile(np.arange(sims.shape[1]), (len(sims), 1))
        )
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out[start : start + block] = np.take_along_axis(part, order, axis=1)
    return out


def candidate_scores(queries: np.ndarray, corpus: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Inner products of each query with its candidate ids (-inf where id == -1).

    Computed in float64 from the float32 embeddings: products are exact and the sums agree with any
    other float64 evaluation to ~1e-16, so ranking and filter decisions do not depend on batching,
    BLAS kernels or hardware (a float32 sum can differ by ~1e-7 between two evaluation orders).
    """
    valid = ids >= 0
    safe = np.where(valid, ids, 0)
    scores = np.empty(ids.shape, dtype=np.float64)
    step = max(1, 2**21 // max(1, ids.shape[1] * corpus.shape[1]))  # bound the gathered block to ~16 MB
    for start in range(0, len(ids), step):
        gathered = corpus[safe[start : start + step]].astype(np.float64)  # (n, k, dim)
        scores[start : start + step] = np.einsum(
            "nd,nkd->nk", queries[start : start + step].astype(np.float64), gathered
        )
    scores[~valid] = -np.inf
    return scores


def positive_scores(queries: np.ndarray, corpus: np.ndarray, padded_ids: np.ndarray) -> np.ndarray:
    """Scores of each query with its (padded, -1) positive ids; NaN on padding."""
    scores = candidate_scores(queries, corpus, padded_ids)
    scores[padded_ids < 0] = np.nan
    return scores
