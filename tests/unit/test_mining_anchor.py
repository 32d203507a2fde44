"""Same inputs, same outputs as sentence-transformers' own `mine_hard_negatives` (the anchor), MiniLM embeddings.

Our side gets the very embeddings the anchor computed (read back from the anchor's embedding cache), so the
comparison is about the mining rules; a sentence-transformers model as `model` is tested on its own below.
"""

from __future__ import annotations

import itertools

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from raycross.mining import mine_hard_negatives

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.util import mine_hard_negatives as anchor_mine  # noqa: E402


def _anchor_embeddings(cache, pairs, corpus):
    """A callable model returning the anchor's cached MiniLM embedding of each text."""
    queries = list(dict.fromkeys(list(pairs["query"])))
    docs = list(dict.fromkeys(corpus + list(pairs["passage"])))
    table = dict(zip(queries, np.load(next(cache.glob("query_embeddings_*.npy")))))
    table.update(zip(docs, np.load(next(cache.glob("corpus_embeddings_*.npy")))))
    return lambda texts: np.stack([table[t] for t in texts])


COMBOS = [
    dict(),
    dict(range_min=2, range_max=12),
    dict(relative_margin=0.05),
    dict(absolute_margin=0.05, max_score=0.8),
    dict(min_score=0.3, num_negatives=5),
    dict(include_positives=True),
]


@pytest.fixture(scope="module")
def setup(minilm_dir, shared_data):
    train = pq.read_table(shared_data / "wordnet-context2gloss" / "train-pairs.parquet").to_pandas()
    train = train[train.label == 1]
    counts = train.groupby("query").size()
    pairs = train[train["query"].isin(counts[counts > 1].index[:3])]
    pairs = datasets.Dataset.from_pandas(
        __import__("pandas").concat([train.head(35), pairs, train.head(1)])[["query", "passage"]].reset_index(drop=True)
    )
    corpus = pq.read_table(shared_data / "wordnet-context2gloss" / "corpus.parquet").column("text").to_pylist()[:300]
    return pairs, corpus, st.SentenceTransformer(str(minilm_dir), device="cpu")


def test_same_rows_as_the_anchor(setup, tmp_path):
    pairs, corpus, model = setup
    lookup = None
    for (i, combo), fmt in itertools.product(enumerate(COMBOS), ["triplet", "n-tuple", "labeled-pair", "labeled-list"]):
        kw = dict(combo, output_format=fmt, output_scores=(i + len(fmt)) % 2 == 0)
        expected = anchor_mine(pairs, model, corpus=corpus, verbose=False, cache_folder=str(tmp_path / "st"), **kw)
        if lookup is None:
            lookup = _anchor_embeddings(tmp_path / "st", pairs, corpus)
        got = mine_hard_negatives(pairs, lookup, corpus=corpus, verbose=False, execution="local", **kw)
        assert got.column_names == expected.column_names, kw
        a, b = got.to_list(), expected.to_list()
        assert len(a) == len(b), kw
        for row_a, row_b in zip(a, b):
            for key in row_b:
                if key in ("scores", "score"):
                    np.testing.assert_allclose(row_a[key], row_b[key], atol=1e-5, err_msg=str(kw))
                else:
                    assert row_a[key] == row_b[key], (kw, key)


def test_sentence_transformers_model_as_model(setup, tiny_encoder_path):
    from raycross import Embedder

    pairs, corpus, _ = setup
    tiny_st = st.SentenceTransformer(str(tiny_encoder_path), device="cpu")  # Transformer + mean pooling
    kw = dict(corpus=corpus, output_format="n-tuple", output_scores=True, verbose=False, execution="local")
    got = mine_hard_negatives(pairs, tiny_st, **kw).to_list()
    expected = mine_hard_negatives(pairs, Embedder(str(tiny_encoder_path), device="cpu"), **kw).to_list()
    assert [r["negative_1"] for r in got] == [r["negative_1"] for r in expected]
    np.testing.assert_allclose([r["scores"] for r in got], [r["scores"] for r in expected], atol=1e-5)
