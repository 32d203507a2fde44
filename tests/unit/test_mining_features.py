"""Random sampling, the embedding cache, parquet output, index options, cross-encoder rescoring, model kinds."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest

from raycross.mining import mine_hard_negatives
from raycross.mining.options import MiningOptions
from raycross.mining.select import select_negatives

_spec = importlib.util.spec_from_file_location("mining_reference", Path(__file__).with_name("test_mining_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


@pytest.fixture(scope="module")
def small(shared_data):
    return ref.load_wordnet(shared_data, 120, 3000)


def test_relative_margin_is_sign_safe():
    # Positive score -0.5, margin 0.1: threshold -0.5 - 0.05 = -0.55 (the (1 - m) * p formula would give -0.45).
    opts = MiningOptions.create(num_negatives=2, relative_margin=0.1, range_max=4)
    sel = select_negatives(
        np.array([0]),
        np.array([[1, 2, 3, 4]]),
        np.array([[-0.5, -0.52, -0.6, -0.7]]),
        np.array([[1]]),
        np.array([[-0.5]]),
        opts,
    )
    assert sel.neg_ids.tolist() == [[3, 4]]
    assert sel.skipped.tolist() == [[0, 1, 0, 0]]


def test_random_sampling_is_seeded_and_samples_the_valid_window(small):
    pairs, corpus = small
    kw = dict(
        corpus=corpus,
        sampling_strategy="random",
        range_min=2,
        range_max=25,
        num_negatives=4,
        max_score=0.9,
        output_format="n-tuple",
        output_scores=True,
        execution="local",
        verbose=False,
    )
    a = mine_hard_negatives(pairs, ref.cheap_embed, seed=7, **kw).to_list()
    b = mine_hard_negatives(pairs, ref.cheap_embed, seed=7, faiss_batch_size=16, **kw).to_list()  # other blocks
    c = mine_hard_negatives(pairs, ref.cheap_embed, seed=8, **kw).to_list()
    assert len(a) == len(pairs.drop_duplicates()) and a == b
    assert a != c
    # Every sampled negative is one of the reference's valid candidates at ranks [range_min, range_max).
    top_rows, _ = ref.reference_mine(
        list(pairs.anchor),
        list(pairs.positive),
        corpus,
        range_min=2,
        range_max=25,
        num_negatives=23,
        max_score=0.9,
        output_format="labeled-list",
    )
    window = {(r["anchor"], r["positive"][0]): set(r["positive"][1:]) for r in top_rows}
    for row in a:
        negatives = [row[f"negative_{i}"] for i in range(1, 5)]
        assert len(set(negatives)) == 4 and set(negatives) <= window[(row["anchor"], row["positive"])]
        assert row["scores"][1:] == sorted(row["scores"][1:], reverse=True)


class CountingEmbedder:
    """A callable model that counts how many texts it embedded."""

    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += len(texts)
        return ref.cheap_embed(texts)


def test_cache_folder_saves_and_reuses_embeddings(small, tmp_path):
    pairs, corpus = small
    first, second = CountingEmbedder(), CountingEmbedder()
    a = mine_hard_negatives(pairs, first, corpus=corpus, cache_folder=str(tmp_path), execution="local", verbose=False)
    files = sorted(p.name.split("_")[0] for p in tmp_path.glob("*_embeddings_*.npy"))
    assert files == ["corpus", "query"] and first.calls > 0
    b = mine_hard_negatives(pairs, second, corpus=corpus, cache_folder=str(tmp_path), execution="local", verbose=False)
    assert second.calls == 0 and a.to_list() == b.to_list()
    # A different prompt is a different cache entry (and different embeddings).
    mine_hard_negatives(
        pairs,
        second,
        corpus=corpus,
        cache_folder=str(tmp_path),
        query_prompt="query: ",
        execution="local",
        verbose=False,
    )
    assert second.calls == pairs.anchor.nunique() and len(list(tmp_path.glob("query_embeddings_*.npy"))) == 2


def test_parquet_output_streams_the_same_rows(small, tmp_path):
    pairs, corpus = small
    kw = dict(corpus=corpus, output_format="labeled-list", output_scores=True, execution="local", verbose=False)
    in_memory = mine_hard_negatives(pairs, ref.cheap_embed, **kw)
    path = mine_hard_negatives(pairs, ref.cheap_embed, output_path=str(tmp_path / "out"), **kw)
    assert path == str(tmp_path / "out")
    from_disk = datasets.Dataset.from_parquet(sorted(str(p) for p in (tmp_path / "out").glob("part-*.parquet")))
    assert from_disk.to_list() == in_memory.to_list()
    with pytest.raises(ValueError, match="already holds"):
        mine_hard_negatives(pairs, ref.cheap_embed, output_path=str(tmp_path / "out"), **kw)
    # the run's marker (written last) tells a finished output from a killed run's; readers skip it
    from raycross.data import to_arrow
    from raycross.mining.output import mined_output_complete

    assert mined_output_complete(tmp_path / "out")
    assert to_arrow(str(tmp_path / "out")).to_pylist() == in_memory.to_list()
    sorted((tmp_path / "out").glob("part-*.parquet"))[-1].unlink()
    assert not mined_output_complete(tmp_path / "out")


def test_ivf_with_all_lists_probed_and_numpy_search_equal_exact_faiss(small):
    pairs, corpus = small
    kw = dict(corpus=corpus, num_negatives=4, max_score=0.95, output_scores=True, execution="local", verbose=False)
    exact = mine_hard_negatives(pairs, ref.cheap_embed, **kw).to_list()
    assert mine_hard_negatives(pairs, ref.cheap_embed, use_faiss=False, **kw).to_list() == exact
    ivf = mine_hard_negatives(pairs, ref.cheap_embed, index_type="ivf", ivf_nlist=8, ivf_nprobe=8, **kw).to_list()
    assert ivf == exact


class WordOverlapCrossEncoder:
    """A deterministic stand-in for a cross-encoder: word overlap plus a tiny text-dependent jitter."""

    num_labels = 1

    @staticmethod
    def score(query, doc):
        q, d = set(query.lower().split()), set(doc.lower().split())
        return len(q & d) / (1 + len(q | d)) + (hash(doc) % 1000) * 1e-6

    def predict(self, pairs, batch_size=32, show_progress_bar=False):
        return np.array([self.score(q, d) for q, d in pairs])


def test_cross_encoder_rescoring_matches_reference(small, caplog):
    pairs, corpus = small
    ce = WordOverlapCrossEncoder()
    scorer = lambda q, docs: [ce.score(q, d) for d in docs]  # noqa: E731
    kw = dict(output_format="labeled-pair", output_scores=True, relative_margin=0.1, min_score=0.02)
    got, stats = mine_hard_negatives(
        pairs,
        ref.cheap_embed,
        corpus=corpus,
        cross_encoder=ce,
        execution="local",
        verbose=False,
        return_statistics=True,
        **kw,
    )
    rows, ref_stats = ref.reference_mine(list(pairs.anchor), list(pairs.positive), corpus, scorer=scorer, **kw)
    ref.assert_rows_equal(got.to_list(), rows)
    ref.assert_stats_equal(stats, ref_stats)
    # Without any filter the anchor does not rescore: same rows as without a cross-encoder, and a warning.
    with caplog.at_level(logging.WARNING):
        plain = mine_hard_negatives(
            pairs, ref.cheap_embed, corpus=corpus, cross_encoder=ce, execution="local", verbose=False
        )
    assert "only used to rescore" in caplog.text
    assert (
        plain.to_list()
        == mine_hard_negatives(pairs, ref.cheap_embed, corpus=corpus, execution="local", verbose=False).to_list()
    )


def test_embedder_instance_and_path_give_the_same_negatives(small, tiny_encoder_path):
    from raycross import Embedder

    pairs, corpus = small
    pairs, corpus = pairs.head(40), corpus[:400]
    by_path = mine_hard_negatives(pairs, str(tiny_encoder_path), corpus=corpus, execution="local", verbose=False)
    by_object = mine_hard_negatives(
        pairs, Embedder(str(tiny_encoder_path), device="cpu"), corpus=corpus, execution="local", verbose=False
    )
    assert by_path.num_rows == 40 * 3 and by_path.to_list() == by_object.to_list()


def test_statistics_are_logged(small, caplog):
    pairs, corpus = small
    with caplog.at_level(logging.INFO, logger="raycross.mining"):
        _, stats = mine_hard_negatives(
            pairs, ref.cheap_embed, corpus=corpus, relative_margin=0.3, execution="local", return_statistics=True
        )
    assert "Metric       Positive       Negative     Difference" in caplog.text
    assert f"Skipped {stats.skipped['relative_margin']['skipped']:,} potential negatives" in caplog.text
    assert stats.to_dict()["positive"]["count"] == stats.num_pairs


def test_named_prompts_of_an_embedder(small, tiny_encoder_path):
    from raycross import Embedder

    pairs, corpus = small
    pairs, corpus = pairs.head(30), corpus[:300]
    embedder = Embedder(str(tiny_encoder_path), device="cpu", prompts={"query": "query: ", "doc": "passage: "})
    kw = dict(corpus=corpus, output_scores=True, execution="local", verbose=False)
    by_name = mine_hard_negatives(pairs, embedder, query_prompt_name="query", corpus_prompt_name="doc", **kw).to_list()
    by_text = mine_hard_negatives(pairs, embedder, query_prompt="query: ", corpus_prompt="passage: ", **kw).to_list()
    assert by_name == by_text
    # The Embedder applies its "query" prompt to anchors by default (as encode_query), but no corpus prompt.
    default = mine_hard_negatives(pairs, embedder, **kw).to_list()
    assert default == mine_hard_negatives(pairs, embedder, query_prompt="query: ", **kw).to_list() != by_name
    with pytest.raises(ValueError, match="corpus_prompt_name='passage' is not one of the model's prompts"):
        mine_hard_negatives(pairs, embedder, corpus_prompt_name="passage", **kw)


def test_auto_execution_uses_actor_pools_only_where_they_pay_off(monkeypatch):
    import ray

    from raycross.mining import mine

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(mine, "_gpu_count", lambda: 0)
    monkeypatch.setattr(mine.os, "cpu_count", lambda: 2)
    assert mine._choose_execution("auto", None, 500) == "local"
    assert mine._choose_execution("auto", None, 250_000) == "local"  # a 2-core laptop: in-process is faster
    assert mine._choose_execution("ray", None, 500) == "ray"
    assert mine._choose_execution("auto", True, 500) == "ray"  # use_multi_process, as in the anchor
    monkeypatch.setattr(mine.os, "cpu_count", lambda: 32)
    assert mine._choose_execution("auto", None, 250_000) == "ray"
    assert mine._choose_execution("auto", None, 500) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # inside a Ray job
    assert mine._choose_execution("auto", None, 500) == "ray"
