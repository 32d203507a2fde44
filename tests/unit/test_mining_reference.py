"""mine_hard_negatives (local runner) against a brute-force numpy reference on real WordNet data.

The reference below is written independently of raycross.mining: full query x corpus score matrix,
one query at a time, plain Python rules of the anchor (sentence-transformers `mine_hard_negatives`).
The Ray tests import it from this file.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from raycross.mining import mine_hard_negatives

DIM = 32


# ----------------------------------------------------------------------------- a cheap deterministic embedder
_TABLE = np.random.default_rng(1234).standard_normal((3, 4096, DIM)).astype(np.float32)


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def cheap_embed(texts: list[str]) -> np.ndarray:
    """Bag of hashed word vectors plus a per-text component (so different texts never tie exactly).

    Plain module-level data only, so it pickles by value into Ray workers.
    """
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            h = _hash(word)
            out[i] += _TABLE[0, h % 4096] + 0.5 * _TABLE[1, (h >> 16) % 4096]
        h = _hash("\x00" + text)
        out[i] += 0.5 * (_TABLE[0, h % 4096] + _TABLE[1, (h >> 16) % 4096] + _TABLE[2, (h >> 32) % 4096])
    return out


def normalized(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- the brute-force reference
_EMBEDDED: dict = {}


def _embedded(embed, texts: tuple) -> np.ndarray:
    key = (embed, texts)
    if key not in _EMBEDDED:
        _EMBEDDED[key] = normalized(embed(list(texts))).astype(np.float64)
    return _EMBEDDED[key]


def reference_mine(
    anchors,
    positives,
    extra_corpus,
    embed=cheap_embed,
    scorer=None,
    *,
    range_min=0,
    range_max=None,
    max_score=None,
    min_score=None,
    absolute_margin=None,
    relative_margin=None,
    num_negatives=3,
    include_positives=False,
    output_format="triplet",
    output_scores=False,
    columns=("anchor", "positive"),
):
    """Rows (list of dicts) and statistics the anchor's rules give, top strategy.

    `scorer(query, docs) -> scores` stands in for a cross-encoder rescoring (applied only with a filter).
    """
    a_col, p_col = columns
    queries = list(dict.fromkeys(anchors))
    corpus = list(dict.fromkeys(list(extra_corpus) + list(positives)))
    cidx = {t: i for i, t in enumerate(corpus)}
    pos = {q: [] for q in queries}
    for a, p in zip(anchors, positives):
        if cidx[p] not in pos[a]:
            pos[a].append(cidx[p])
    max_pos = max(Counter(anchors).values())
    if include_positives:
        output_format = "n-tuple"
    filtering = absolute_margin is not None or relative_margin is not None or max_score is not None
    rescoring = scorer is not None and (filtering or min_score is not None)
    if range_max is None:
        range_max = (
            range_min + num_negatives * (10 if filtering or (rescoring and min_score is not None) else 1) + max_pos
        )
    depth = range_max + max_pos
    q_emb = _embedded(embed, tuple(queries))
    c_emb = _embedded(embed, tuple(corpus))
    sims = q_emb @ c_emb.T  # the full matrix: fine at test sizes

    skipped = Counter()
    chosen, pos_scores = {}, {}
    for qi, q in enumerate(queries):
        cand = np.lexsort((np.arange(len(corpus)), -sims[qi]))[:depth]
        score = {int(c): sims[qi, c] for c in cand}
        p_score = {c: sims[qi, c] for c in pos[q]}
        if rescoring:
            score = dict(zip(score, scorer(q, [corpus[c] for c in score])))
            p_score = dict(zip(p_score, scorer(q, [corpus[c] for c in p_score])))
        pos_scores[q] = [p_score[c] for c in pos[q]]
        hardest = min(pos_scores[q])
        kept = []
        for c, s in score.items():
            if not include_positives and c in pos[q]:
                continue
            if absolute_margin is not None and s + absolute_margin > hardest:
                skipped["absolute_margin"] += 1
            elif relative_margin is not None and s > hardest - abs(hardest) * relative_margin:
                skipped["relative_margin"] += 1
            elif max_score is not None and s > max_score:
                skipped["max_score"] += 1
            elif min_score is not None and s < min_score:
                skipped["min_score"] += 1
            else:
                kept.append((s, c))
        kept.sort(key=lambda x: (-x[0], x[1]))
        chosen[q] = kept[range_min : range_min + num_negatives]

    rows, negs, diffs = [], [], []
    n_pairs = sum(len(pos[q]) for q in queries)
    for q in queries:
        for j, p in enumerate(pos[q]):
            ps = pos_scores[q][j]
            found = chosen[q]
            if output_format == "triplet":
                for s, c in found:
                    row = {a_col: q, p_col: corpus[p], "negative": corpus[c]}
                    if output_scores:
                        row["scores"] = [ps, s]
                    rows.append(row)
            elif output_format == "n-tuple":
                if len(found) == num_negatives:
                    row = {
                        a_col: q,
                        p_col: corpus[p],
                        **{f"negative_{i + 1}": corpus[c] for i, (_, c) in enumerate(found)},
                    }
                    if output_scores:
                        row["scores"] = [ps] + [s for s, _ in found]
                    rows.append(row)
            elif output_format == "labeled-list" and found:
                row = {a_col: q, p_col: [corpus[p]] + [corpus[c] for _, c in found]}
                row["scores" if output_scores else "labels"] = (
                    [ps] + [s for s, _ in found] if output_scores else [1] + [0] * len(found)
                )
                rows.append(row)
            if output_format != "n-tuple" or len(found) == num_negatives:
                negs += [s for s, _ in found]
                diffs += [ps - s for s, _ in found]
        if output_format == "labeled-pair":
            for j, p in enumerate(pos[q]):
                rows.append(
                    {a_col: q, p_col: corpus[p], **({"score": pos_scores[q][j]} if output_scores else {"label": 1})}
                )
            for s, c in chosen[q]:
                rows.append({a_col: q, p_col: corpus[c], **({"score": s} if output_scores else {"label": 0})})
    maximum = {
        "triplet": n_pairs * num_negatives,
        "n-tuple": n_pairs,
        "labeled-list": n_pairs,
        "labeled-pair": len(queries) * num_negatives + len(anchors),
    }[output_format]
    stats = {
        "positive": [s for q in queries for s in pos_scores[q]],
        "negative": negs,
        "difference": diffs,
        "skipped": dict(skipped),
        "missing": maximum - len(rows),
        "range_max": range_max,
        "depth": len(queries) * depth,
    }
    return rows, stats


def summary(values) -> dict:
    """count/mean/median (lower middle, as torch.median)/std/min/quartiles/max, computed plainly."""
    v = sorted(values)
    n = len(v)
    if n == 0:
        return {"count": 0}

    def quantile(q):
        pos = q * (n - 1)
        lo = math.floor(pos)
        return v[lo] + (v[min(lo + 1, n - 1)] - v[lo]) * (pos - lo)

    mean = sum(v) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return {
        "count": n,
        "mean": mean,
        "median": v[(n - 1) // 2],
        "std": std,
        "min": v[0],
        "q25": quantile(0.25),
        "q50": quantile(0.5),
        "q75": quantile(0.75),
        "max": v[-1],
    }


def assert_rows_equal(got_rows: list[dict], ref_rows: list[dict]) -> None:
    assert len(got_rows) == len(ref_rows)
    for i, (got, ref) in enumerate(zip(got_rows, ref_rows)):
        assert list(got) == list(ref), f"row {i}: columns {list(got)} != {list(ref)}"
        for key, value in ref.items():
            if key in ("scores", "score"):
                np.testing.assert_allclose(got[key], value, atol=1e-9, err_msg=f"row {i} column {key}")
            else:
                assert got[key] == value, f"row {i} column {key}: {got[key]!r} != {value!r}"


def assert_stats_equal(stats, ref: dict) -> None:
    for name in ("positive", "negative", "difference"):
        expected = summary(ref[name])
        got = getattr(stats, name)
        assert got.count == expected["count"], name
        for key, value in expected.items():
            if key != "count":
                assert getattr(got, key) == pytest.approx(value, abs=1e-9, nan_ok=True), f"{name}.{key}"
    assert {k: v["skipped"] for k, v in stats.skipped.items()} == ref["skipped"]
    remaining = ref["depth"]
    for name, info in stats.skipped.items():  # each ratio is relative to the candidates entering that filter
        assert info["ratio"] == pytest.approx(info["skipped"] / remaining)
        remaining -= info["skipped"]
    assert stats.missing == ref["missing"]
    assert stats.range_max == ref["range_max"]


# ----------------------------------------------------------------------------- real data
def load_wordnet(shared: Path, n_queries: int, n_corpus: int):
    """First queries of the WordNet training positives, all queries with two positives, one duplicated row."""
    import pyarrow.parquet as pq

    train = pq.read_table(shared / "wordnet-context2gloss" / "train-pairs.parquet").to_pandas()
    train = train[train.label == 1]
    counts = train.groupby("query").size()
    multi = train[train["query"].isin(counts[counts > 1].index[:10])]
    head = train[~train["query"].isin(multi["query"])].head(n_queries - 10)
    pairs = __import__("pandas").concat([head, multi, head.head(1)]).reset_index(drop=True)
    corpus = pq.read_table(shared / "wordnet-context2gloss" / "corpus.parquet").column("text").to_pylist()[:n_corpus]
    return pairs.rename(columns={"query": "anchor", "passage": "positive"})[["anchor", "positive"]], corpus


@pytest.fixture(scope="module")
def wordnet(shared_data):
    return load_wordnet(shared_data, 200, 6_000)


COMBOS = [
    dict(),
    dict(range_min=3, range_max=30),
    dict(absolute_margin=0.1),
    dict(relative_margin=0.05, max_score=0.9),
    dict(min_score=0.4, num_negatives=5),
    dict(include_positives=True),
]
FORMATS = ["triplet", "n-tuple", "labeled-pair", "labeled-list"]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_local_matches_reference_all_formats(wordnet, combo, tmp_path_factory):
    pairs, corpus = wordnet
    cache = tmp_path_factory.getbasetemp() / "emb-cache"  # embeddings computed once for all combos
    for i, fmt in enumerate(FORMATS):
        scores = i % 2 == 1
        got, stats = mine_hard_negatives(
            pairs,
            cheap_embed,
            corpus=corpus,
            output_format=fmt,
            output_scores=scores,
            cache_folder=str(cache),
            execution="local",
            verbose=False,
            return_statistics=True,
            **combo,
        )
        ref_rows, ref_stats = reference_mine(
            list(pairs.anchor), list(pairs.positive), corpus, output_format=fmt, output_scores=scores, **combo
        )
        assert_rows_equal(got.to_list(), ref_rows)
        assert_stats_equal(stats, ref_stats)
        assert stats.num_rows == len(ref_rows)
