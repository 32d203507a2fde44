"""Reading NanoBEIR data sets (corpus, queries, qrels, BM25 candidates) from the hub or a local directory.

Two layouts are understood, on the hub and on disk:

- one repository / directory for all data sets (``sentence-transformers/NanoBEIR-en``): the subsets
  (``corpus``, ``queries``, ``qrels``, ``bm25``) are configs and every data set is a split named
  ``Nano{Name}``. On disk: ``{root}/{subset}/{split}.parquet`` or ``{root}/{subset}/{split}-*.parquet``,
  or one folder per data set: ``{root}/{split}/{subset}.parquet`` or ``{root}/{split}/{subset}/*.parquet``;
- one repository per data set, given as a template with ``{name}``
  (``"sentence-transformers/Nano{name}-bm25"``, the zeta-alpha-ai layout extended with BM25): every
  subset has the single split ``train``. Such repositories may hold a ``relevance`` subset
  (``query-id``, ``positive-corpus-ids``, ``bm25-ranked-ids``) instead of ``qrels`` + ``bm25``.

Files may be parquet or JSON lines. Columns: corpus and queries ``_id``, ``text``; qrels ``query-id``,
``corpus-id`` (a string or a list of strings), optional ``score``; bm25 ``query-id``, ``corpus-ids``
(best first).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raycross.data import read_files

logger = logging.getLogger(__name__)

DATASET_NAME_TO_HUMAN_READABLE = {
    "climatefever": "ClimateFEVER",
    "dbpedia": "DBPedia",
    "fever": "FEVER",
    "fiqa2018": "FiQA2018",
    "hotpotqa": "HotpotQA",
    "msmarco": "MSMARCO",
    "nfcorpus": "NFCorpus",
    "nq": "NQ",
    "quoraretrieval": "QuoraRetrieval",
    "scidocs": "SCIDOCS",
    "arguana": "ArguAna",
    "scifact": "SciFact",
    "touche2020": "Touche2020",
}

_COLUMNS = {
    "corpus": ["_id", "text"],
    "queries": ["_id", "text"],
    "qrels": ["query-id", "corpus-id"],
    "bm25": ["query-id", "corpus-ids"],
    "relevance": ["query-id", "positive-corpus-ids", "bm25-ranked-ids"],
}


@dataclass
class NanoBEIRData:
    """One NanoBEIR data set, as ids and texts."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, float]]  # query id -> {corpus id: gain}
    candidates: list[tuple[str, list[str]]]  # (query id, BM25-ranked corpus ids), in file order


def human_readable_name(dataset_name: str) -> str:
    """``"msmarco"`` -> ``"MSMARCO"`` (case-insensitive), ValueError for an unknown name.

    Example:
        >>> human_readable_name("SciFact")
        'SciFact'
    """
    key = dataset_name.lower() if isinstance(dataset_name, str) else dataset_name
    if key not in DATASET_NAME_TO_HUMAN_READABLE:
        raise ValueError(
            f"Dataset {dataset_name!r} is not a valid NanoBEIR dataset; valid names are "
            f"{list(DATASET_NAME_TO_HUMAN_READABLE)}"
        )
    return DATASET_NAME_TO_HUMAN_READABLE[key]


def _local_files(root: Path, subset: str, split: str) -> list[Path]:
    patterns = [
        f"{subset}/{split}.parquet", f"{subset}/{split}-*.parquet", f"{subset}/{split}/*.parquet",
        f"{split}/{subset}.parquet", f"{split}/{subset}/*.parquet", f"{split}/{subset}-*.parquet",
        f"{subset}/{split}.jsonl", f"{subset}/{split}-*.jsonl", f"{split}/{subset}.jsonl",
        f"{split}/{subset}/*.jsonl",
    ]
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found
    return []


class _Source:
    """Reads `subset` of `split` from a local directory or a hub dataset id."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.root = Path(source) if Path(source).is_dir() else None

    def has(self, subset: str, split: str) -> bool:
        if self.root is not None:
            return bool(_local_files(self.root, subset, split))
        try:
            from datasets import get_dataset_config_names

            return subset in get_dataset_config_names(self.source)
        except Exception:  # offline or unknown: let `read` report the real error
            return True

    def read(self, subset: str, split: str) -> dict[str, list[Any]]:
        if self.root is not None:
            files = _local_files(self.root, subset, split)
            if not files:
                raise ValueError(
                    f"NanoBEIR directory {self.root}: no files for subset '{subset}' split '{split}' "
                    f"(looked for {subset}/{split}.parquet, {subset}/{split}-*.parquet, {split}/{subset}.parquet, ...)"
                )
            columns = read_files(files).to_pydict()
        else:
            try:
                from datasets import load_dataset

                dataset = load_dataset(self.source, subset, split=split)
            except Exception as exc:
                raise ValueError(
                    f"Could not load subset '{subset}' split '{split}' of the dataset '{self.source}': {exc}"
                ) from exc
            columns = dataset.to_dict()
        missing = [c for c in _COLUMNS[subset] if c not in columns]
        if missing:
            raise ValueError(
                f"Subset '{subset}' split '{split}' of '{self.source}' lacks the columns {missing} "
                f"(found {sorted(columns)})"
            )
        return columns


def _as_id_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def load_nanobeir(dataset_id: str, dataset_name: str, graded: bool = False) -> NanoBEIRData:
    """Load one NanoBEIR data set (e.g. ``"msmarco"``) from `dataset_id` (hub id, directory or ``{name}`` template).

    With ``graded=True`` the qrels ``score`` column (when present) gives the gains; otherwise every
    judged document has gain 1, as in sentence-transformers.

    Example:
        >>> data = load_nanobeir("sentence-transformers/NanoBEIR-en", "msmarco")  # doctest: +SKIP
        >>> len(data.candidates)  # doctest: +SKIP
        50
    """
    human = human_readable_name(dataset_name)
    if "{name}" in dataset_id:
        source, split = _Source(dataset_id.format(name=human)), "train"
    else:
        source, split = _Source(dataset_id), f"Nano{human}"

    corpus_columns = source.read("corpus", split)
    query_columns = source.read("queries", split)
    corpus = dict(zip(map(str, corpus_columns["_id"]), corpus_columns["text"]))
    queries = dict(zip(map(str, query_columns["_id"]), query_columns["text"]))

    qrels: dict[str, dict[str, float]] = {}
    if source.has("bm25", split) or not source.has("relevance", split):
        qrel_columns = source.read("qrels", split)
        bm25_columns = source.read("bm25", split)
        gains = qrel_columns.get("score") if graded else None
        for row, (query_id, corpus_ids) in enumerate(zip(qrel_columns["query-id"], qrel_columns["corpus-id"])):
            gain = 1.0 if gains is None or gains[row] is None else float(gains[row])
            for corpus_id in _as_id_list(corpus_ids):
                qrels.setdefault(str(query_id), {})[corpus_id] = gain
        candidates = [
            (str(query_id), _as_id_list(ids))
            for query_id, ids in zip(bm25_columns["query-id"], bm25_columns["corpus-ids"])
        ]
    else:
        relevance = source.read("relevance", split)
        candidates = []
        for query_id, positive_ids, ranked_ids in zip(
            relevance["query-id"], relevance["positive-corpus-ids"], relevance["bm25-ranked-ids"]
        ):
            qrels[str(query_id)] = dict.fromkeys(_as_id_list(positive_ids), 1.0)
            candidates.append((str(query_id), _as_id_list(ranked_ids)))
    return NanoBEIRData(corpus, queries, qrels, candidates)


def rerank_samples(data: NanoBEIRData, rerank_k: int, name: str = "") -> list[dict[str, Any]]:
    """Reranking samples ``{"query", "positive", "documents"}`` with the top `rerank_k` BM25 candidates.

    Queries without any relevant document (gain > 0) are skipped with a warning. Positives are a
    ``{text: gain}`` dict when some gain differs from 1, else a list of texts.

    Example:
        >>> samples = rerank_samples(load_nanobeir(path, "nq"), rerank_k=100)  # doctest: +SKIP
    """

    def text_of(table: Mapping[str, str], doc_id: str, what: str) -> str:
        if doc_id not in table:
            raise ValueError(f"{name or 'NanoBEIR'}: {what} id {doc_id!r} is not in the {what} table")
        return table[doc_id]

    samples, skipped = [], 0
    for query_id, ranked_ids in data.candidates:
        judged = {doc_id: gain for doc_id, gain in data.qrels.get(query_id, {}).items() if gain > 0}
        if not judged:
            skipped += 1
            continue
        positives = {text_of(data.corpus, doc_id, "corpus"): gain for doc_id, gain in judged.items()}
        samples.append({
            "query": text_of(data.queries, query_id, "query"),
            "positive": positives if any(g != 1.0 for g in positives.values()) else list(positives),
            "documents": [text_of(data.corpus, doc_id, "corpus") for doc_id in ranked_ids[:rerank_k]],
        })
    if skipped:
        logger.warning("%s: skipped %d queries without relevant documents", name or "NanoBEIR", skipped)
    if not samples:
        raise ValueError(f"{name or 'NanoBEIR'}: no query has a relevant document in the qrels")
    return samples
