"""Hard-negative mining: raycross vs sentence-transformers, and the real WordNet mining run.

Subcommands:
  scale    100k queries x 117k WordNet definitions with precomputed embeddings (the same arrays for both
           sides, loaded from each library's embedding cache), each side in its own subprocess; prints
           wall time and peak memory of each side's whole process tree, the machine, load and versions.
  wordnet  mine hard negatives for the WordNet training queries against the 117k-definition corpus with
           the MiniLM weights (real embeddings) and save the mined datasets for reranker training.

Memory is sampled every 0.1 s over the subprocess and all its descendants (for raycross: the driver,
the Ray GCS/raylet/agents and every Ray worker). Two sums are reported: RSS (counts pages shared
between processes once per process, so it overstates multi-process programs) and PSS (shared pages
split between the processes that map them: the memory the tree really occupies). Peak = max over
samples of the sum.

Usage:
    python benchmarks/bench_mining.py scale --queries 100000
    python benchmarks/bench_mining.py wordnet --out /tmp/wordnet-mined
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DATA = Path(os.environ.get("RAYCROSS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
WORDNET = DATA / "wordnet-context2gloss"
# Two option sets, both with the anchor's defaults otherwise: plain top-5 triplets, and the NV-Retriever
# setting the anchor's docstring recommends (relative_margin=0.05, so range_max = 10 x num_negatives + 1).
CONFIGS = {
    "top5": dict(num_negatives=5, sampling_strategy="top", output_format="triplet", batch_size=64),
    "margin": dict(
        num_negatives=5, relative_margin=0.05, sampling_strategy="top", output_format="triplet", batch_size=64
    ),
}


# ----------------------------------------------------------------------------- memory of a process tree
class TreeMemoryMonitor:
    """Samples the summed RSS and PSS of a process and all its descendants in a background thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.hwm: dict[int, int] = {}  # pid -> kernel high-water mark of its RSS (VmHWM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        rss = pss = 0
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            return
        for p in procs:
            try:
                info = p.memory_full_info()
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
                with open(f"/proc/{p.pid}/status") as f:
                    hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
                self.hwm[p.pid] = max(self.hwm.get(p.pid, 0), hwm)
            except (psutil.Error, OSError, StopIteration):
                continue
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, len(procs))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], log_path: Path) -> dict:
    """Run a command in a subprocess, sampling its process tree's memory; returns its JSON result line."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        with TreeMemoryMonitor(proc.pid) as mon:
            out, _ = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log_path}")
    result = json.loads(out.strip().splitlines()[-1])
    # sum_vmhwm: every process's own RSS peak added up (they need not coincide): an upper bound.
    result.update(
        process_wall_s=wall,
        peak_tree_rss_mb=mon.peak_rss / 2**20,
        peak_tree_pss_mb=mon.peak_pss / 2**20,
        sum_vmhwm_mb=sum(mon.hwm.values()) / 2**20,
        max_processes=mon.peak_procs,
    )
    return result


def machine_info() -> dict:
    import faiss
    import numpy
    import psutil
    import ray
    import torch

    info = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg": os.getloadavg(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "faiss": faiss.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import sentence_transformers

        info["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:
        info["sentence_transformers"] = None
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


# ----------------------------------------------------------------------------- scale benchmark data
def hashed_embeddings(texts: list[str], dim: int = 384, seed: int = 0):
    """A cheap deterministic embedder: bag of lower-cased words times a seeded random matrix, normalized."""
    import numpy as np
    import scipy.sparse as sp

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        for word in text.lower().replace(",", " ").replace(".", " ").split():
            rows.append(i)
            cols.append(vocab.setdefault(word, len(vocab)))
    # Word vectors keyed by a stable hash of the word, so the same word gets the same vector in any call.
    keys = np.array(
        [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") for w in vocab], dtype=np.uint64
    )
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((4096, dim)).astype(np.float32)
    mix = rng.standard_normal((4096, dim)).astype(np.float32)
    vectors = base[keys % np.uint64(4096)] + 0.5 * mix[(keys >> np.uint64(20)) % np.uint64(4096)]
    bow = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
    emb = np.asarray(bow @ vectors, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    np.divide(emb, norms, out=emb, where=norms > 0)
    return emb


def build_scale_data(n_queries: int, work: Path) -> Path:
    """(anchor, positive) pairs: WordNet training + evaluation queries with their definitions, then SNLI
    sentences paired with a seeded random definition, up to n_queries unique anchors; corpus = the 117k
    definitions. Writes pairs.parquet and corpus.parquet under `work`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    pairs_path = work / f"pairs-{n_queries}.parquet"
    if pairs_path.exists():
        return pairs_path
    corpus = pq.read_table(WORDNET / "corpus.parquet").column("text").to_pylist()
    train = pq.read_table(WORDNET / "train-pairs.parquet").to_pandas()
    train = train[train.label == 1]
    anchors, positives = list(train["query"]), list(train["passage"])
    queries = pq.read_table(WORDNET / "queries.parquet").to_pandas()
    qrels = pq.read_table(WORDNET / "qrels.parquet").to_pandas()
    id2text = dict(zip(pq.read_table(WORDNET / "corpus.parquet").column("_id").to_pylist(), corpus))
    qtext = dict(zip(queries["_id"], queries["text"]))
    for qid, cid in zip(qrels["query-id"], qrels["corpus-id"]):
        anchors.append(qtext[qid])
        positives.append(id2text[cid])
    anchors, positives = anchors[:n_queries], positives[:n_queries]
    seen = set(anchors)
    snli = pq.read_table(DATA / "snli" / "train.parquet").to_pandas()
    rng = np.random.default_rng(0)
    for sentence in list(snli["hypothesis"]) + list(snli["premise"]):
        if len(seen) >= n_queries:
            break
        if sentence not in seen:
            seen.add(sentence)
            anchors.append(sentence)
            positives.append(corpus[int(rng.integers(len(corpus)))])
    pq.write_table(pa.table({"anchor": anchors, "positive": positives}), pairs_path)
    pq.write_table(pa.table({"text": corpus}), work / "corpus.parquet")
    return pairs_path


def prepare_caches(pairs_path: Path, work: Path, model_path: str) -> dict:
    """Embed once with the cheap embedder and write the arrays into both libraries' embedding caches."""
    import numpy as np
    import pyarrow.parquet as pq

    from raycross.mining.encoders import EncoderSpec, cache_file
    from raycross.mining.inputs import prepare_inputs

    pairs = pq.read_table(pairs_path)
    corpus = pq.read_table(work / "corpus.parquet").column("text")
    inputs = prepare_inputs(pairs, corpus=corpus)
    queries, docs = inputs.queries.to_pylist(), inputs.corpus.to_pylist()
    q_emb, c_emb = hashed_embeddings(queries), hashed_embeddings(docs)
    rc_cache, st_cache = work / "rc-cache", work / "st-cache"
    rc_cache.mkdir(exist_ok=True)
    st_cache.mkdir(exist_ok=True)
    spec = EncoderSpec.create(model_path)
    np.save(cache_file(rc_cache, spec, "query", inputs.queries), q_emb)
    np.save(cache_file(rc_cache, spec, "document", inputs.corpus), c_emb)
    # sentence-transformers' cache key: sha256(repr((base_model, prompt, prompt_name, texts))).
    base_model = _st_base_model(model_path)
    q_hash = hashlib.sha256(repr((base_model, None, None, queries)).encode()).hexdigest()
    c_hash = hashlib.sha256(repr((base_model, None, None, docs)).encode()).hexdigest()
    np.save(st_cache / f"query_embeddings_{q_hash}.npy", q_emb)
    np.save(st_cache / f"corpus_embeddings_{c_hash}.npy", c_emb)
    return {"queries": len(queries), "corpus": len(docs), "pairs": inputs.num_rows, "dim": int(q_emb.shape[1])}


def _st_base_model(model_path: str) -> str:
    code = (
        "import sys;from sentence_transformers import SentenceTransformer;"
        f"m=SentenceTransformer({model_path!r}, device='cpu');print(m.model_card_data.base_model or '')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    return lines[-1] if lines else ""


# ----------------------------------------------------------------------------- one side (subprocess)
def side_main(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    options = CONFIGS[args.config]
    work = Path(args.work)
    pairs = pq.read_table(args.pairs)
    corpus_texts = pq.read_table(work / "corpus.parquet").column("text")
    t0 = time.perf_counter()
    if args.side == "st":
        import datasets
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.util import mine_hard_negatives

        model = SentenceTransformer(args.model, device="cpu")
        dataset = datasets.Dataset(pairs)
        start = time.perf_counter()
        out = mine_hard_negatives(
            dataset,
            model,
            corpus=corpus_texts.to_pylist(),
            use_faiss=True,
            cache_folder=str(work / "st-cache"),
            verbose=True,
            **options,
        )
        result = {"rows": out.num_rows, "columns": out.column_names}
    else:
        import ray

        from raycross.mining import mine_hard_negatives

        if args.side == "raycross-ray":
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        out, stats = mine_hard_negatives(
            pairs,
            args.model,
            corpus=corpus_texts,
            cache_folder=str(work / "rc-cache"),
            verbose=False,
            execution="ray" if args.side == "raycross-ray" else "local",
            num_workers=args.workers,
            return_statistics=True,
            **options,
        )
        result = {"rows": out.num_rows, "columns": out.column_names, "table": stats.table()}
    result["mine_s"] = time.perf_counter() - start
    result["total_s"] = time.perf_counter() - t0
    print(json.dumps(result))


def scale_main(args: argparse.Namespace) -> None:
    from raycross.resources import minilm_path

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = str(minilm_path())
    t = time.perf_counter()
    pairs = build_scale_data(args.queries, work)
    sizes = prepare_caches(pairs, work, model)
    print(f"data + precomputed embeddings ready in {time.perf_counter() - t:.0f}s: {sizes}", flush=True)
    info = machine_info()
    print(json.dumps(info, default=str), flush=True)
    report = {"machine": info, "sizes": sizes, "configs": {}, "ratios": {}}
    for config in args.configs.split(","):
        results = {}
        for side in args.sides.split(","):
            cmd = [
                sys.executable,
                __file__,
                "_side",
                side,
                "--pairs",
                str(pairs),
                "--work",
                str(work),
                "--model",
                model,
                "--config",
                config,
            ] + (["--workers", str(args.workers)] if args.workers else [])
            load_before = os.getloadavg()
            r = results[side] = run_measured(cmd, work / f"{config}-{side}.log")
            r["load_before"] = load_before
            print(
                f"{config:7s} {side:14s} mine {r['mine_s']:7.1f}s  process {r['process_wall_s']:7.1f}s  "
                f"peak tree RSS {r['peak_tree_rss_mb']:6.0f} MB  PSS {r['peak_tree_pss_mb']:6.0f} MB  "
                f"sum VmHWM {r['sum_vmhwm_mb']:6.0f} MB  procs {r['max_processes']:2d}  rows {r['rows']:,}  "
                f"load {load_before[0]:.1f}",
                flush=True,
            )
        report["configs"][config] = {"options": CONFIGS[config], "results": results}
        for side in results:
            if side != "st" and "st" in results:
                st, rc = results["st"], results[side]
                report["ratios"][f"{config}/{side}"] = {
                    "speedup_mine": round(st["mine_s"] / rc["mine_s"], 3),
                    "speedup_process": round(st["process_wall_s"] / rc["process_wall_s"], 3),
                    "peak_pss_ratio": round(rc["peak_tree_pss_mb"] / st["peak_tree_pss_mb"], 3),
                    "peak_rss_ratio": round(rc["peak_tree_rss_mb"] / st["peak_tree_rss_mb"], 3),
                }
        for side, r in results.items():
            if "table" in r:
                print(f"--- {config} {side} statistics\n{r['table']}", flush=True)
    report["machine"]["load_avg_after"] = os.getloadavg()
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report["ratios"], indent=2))


# ----------------------------------------------------------------------------- the real WordNet run
def wordnet_main(args: argparse.Namespace) -> None:
    """Mine with real MiniLM embeddings; measured in a subprocess like the scale sides."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        __file__,
        "_wordnet",
        "--out",
        str(out),
        "--cache",
        args.cache,
        "--num-negatives",
        str(args.num_negatives),
    ]
    cmd += ["--workers", str(args.workers)] if args.workers else []
    cmd += ["--relative-margin", str(args.relative_margin)] if args.relative_margin is not None else []
    info = machine_info()
    r = run_measured(cmd, out / "mining.log")
    r["machine"] = info
    r["load_avg_after"] = os.getloadavg()
    (out / "report.json").write_text(json.dumps(r, indent=2, default=str))
    print(json.dumps({k: v for k, v in r.items() if k not in ("table", "table_ntuple")}, indent=2, default=str))
    print(r["table"])


def wordnet_side(args: argparse.Namespace) -> None:
    import logging

    import pyarrow.parquet as pq
    import ray

    from raycross.mining import mine_hard_negatives
    from raycross.resources import minilm_path

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    out = Path(args.out)
    train = pq.read_table(WORDNET / "train-pairs.parquet").to_pandas()
    pairs = train[train.label == 1][["query", "passage"]].reset_index(drop=True)
    corpus = pq.read_table(WORDNET / "corpus.parquet").column("text")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    options = dict(
        corpus=corpus,
        num_negatives=args.num_negatives,
        relative_margin=args.relative_margin,
        batch_size=64,
        cache_folder=args.cache,
        execution="ray",
        num_workers=args.workers,
        return_statistics=True,
    )
    start = time.perf_counter()
    mined, stats = mine_hard_negatives(pairs, str(minilm_path()), output_format="labeled-pair", **options)
    mine_s = time.perf_counter() - start
    mined.save_to_disk(str(out / "labeled-pair"))
    mined.to_parquet(str(out / "labeled-pair.parquet"))
    # The same negatives as (query, positive, negative_1..n) tuples for listwise / MNRL losses (cached embeddings).
    start = time.perf_counter()
    tuples, stats_t = mine_hard_negatives(pairs, str(minilm_path()), output_format="n-tuple", **options)
    tuple_s = time.perf_counter() - start
    tuples.save_to_disk(str(out / "n-tuple"))
    (out / "statistics.json").write_text(
        json.dumps({"labeled-pair": stats.to_dict(), "n-tuple": stats_t.to_dict()}, indent=2, default=str)
    )
    print(
        json.dumps(
            {
                "mine_s": mine_s,
                "rows": mined.num_rows,
                "columns": mined.column_names,
                "table": stats.table(),
                "ntuple_s": tuple_s,
                "ntuple_rows": tuples.num_rows,
                "table_ntuple": stats_t.table(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scale")
    s.add_argument("--queries", type=int, default=100_000)
    s.add_argument("--work", default="/tmp/bench-mining")
    s.add_argument("--workers", type=int, default=None, help="actor pool size (default: raycross's own)")
    s.add_argument("--sides", default="st,raycross-ray,raycross-local")
    s.add_argument("--configs", default="top5,margin")
    w = sub.add_parser("wordnet")
    w.add_argument("--out", default="/tmp/wordnet-mined")
    w.add_argument("--cache", default="/tmp/wordnet-mined/embedding-cache")
    w.add_argument("--workers", type=int, default=None)
    w.add_argument("--num-negatives", type=int, default=5)
    w.add_argument("--relative-margin", type=float, default=None)
    p = sub.add_parser("_side")
    p.add_argument("side", choices=["st", "raycross-ray", "raycross-local"])
    p.add_argument("--pairs", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--config", choices=sorted(CONFIGS), required=True)
    p.add_argument("--workers", type=int, default=None)
    q = sub.add_parser("_wordnet")
    q.add_argument("--out", required=True)
    q.add_argument("--cache", required=True)
    q.add_argument("--workers", type=int, default=None)
    q.add_argument("--num-negatives", type=int, default=5)
    q.add_argument("--relative-margin", type=float, default=None)
    args = parser.parse_args()
    {"scale": scale_main, "wordnet": wordnet_main, "_side": side_main, "_wordnet": wordnet_side}[args.cmd](args)


if __name__ == "__main__":
    main()
