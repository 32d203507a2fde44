"""mine_hard_negatives on Ray Data (embed / search / rescore actor pools) against the brute-force reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from raycross.mining import mine_hard_negatives

_spec = importlib.util.spec_from_file_location(
    "mining_reference", Path(__file__).resolve().parents[1] / "unit" / "test_mining_reference.py"
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


@pytest.fixture(scope="module")
def wordnet_500(shared_data):
    return ref.load_wordnet(shared_data, 500, 20_000)


def test_ray_matches_reference_and_statistics(ray_session, wordnet_500, tmp_path):
    pairs, corpus = wordnet_500
    anchors, positives = list(pairs.anchor), list(pairs.positive)
    runs = [
        # Streaming: queries go through the embed actor pool into the search pool (no cache).
        dict(output_format="triplet", output_scores=True),
        # Cached embeddings: only the search pool runs.
        dict(output_format="labeled-pair", relative_margin=0.05, max_score=0.95, cache_folder=str(tmp_path)),
        dict(
            output_format="labeled-list",
            range_min=2,
            range_max=20,
            absolute_margin=0.05,
            min_score=0.2,
            output_scores=True,
            cache_folder=str(tmp_path),
        ),
    ]
    for kw in runs:
        got, stats = mine_hard_negatives(
            pairs,
            ref.cheap_embed,
            corpus=corpus,
            execution="ray",
            num_workers=2,
            verbose=False,
            return_statistics=True,
            **kw,
        )
        kw.pop("cache_folder", None)
        rows, ref_stats = ref.reference_mine(anchors, positives, corpus, **kw)
        ref.assert_rows_equal(got.to_list(), rows)
        ref.assert_stats_equal(stats, ref_stats)


def test_ray_random_sampling_is_deterministic_across_worker_counts(ray_session, wordnet_500, tmp_path):
    pairs, corpus = wordnet_500
    pairs = pairs.head(200)
    kw = dict(
        corpus=corpus,
        sampling_strategy="random",
        range_max=30,
        num_negatives=3,
        seed=3,
        cache_folder=str(tmp_path),
        verbose=False,
    )
    local = mine_hard_negatives(pairs, ref.cheap_embed, execution="local", **kw).to_list()
    one = mine_hard_negatives(
        pairs, ref.cheap_embed, execution="ray", num_workers=1, faiss_batch_size=64, **kw
    ).to_list()
    two = mine_hard_negatives(pairs, ref.cheap_embed, execution="ray", num_workers=2, **kw).to_list()
    assert len(local) == 3 * len(pairs.drop_duplicates()) and local == one == two


def test_ray_models_from_paths_and_cross_encoder_rescoring(
    ray_session, wordnet_500, tiny_encoder_path, tiny_model_path
):
    """An Embedder and a raycross CrossEncoder created from paths inside the actors give the local result."""
    from raycross import CrossEncoder

    pairs, corpus = wordnet_500
    pairs, corpus = pairs.head(60), corpus[:600]
    # min_score=0 drops nothing but makes the cross-encoder rescore (as in the anchor, only with a filter).
    kw = dict(
        corpus=corpus,
        cross_encoder=str(tiny_model_path),
        min_score=0.0,
        num_negatives=2,
        output_format="labeled-pair",
        output_scores=True,
        verbose=False,
    )
    on_ray = mine_hard_negatives(pairs, str(tiny_encoder_path), execution="ray", num_workers=1, **kw).to_list()
    local = mine_hard_negatives(pairs, str(tiny_encoder_path), execution="local", **kw).to_list()
    assert len(on_ray) == len(pairs) + 2 * pairs.anchor.nunique()
    assert [r["positive"] for r in on_ray] == [r["positive"] for r in local]
    np.testing.assert_allclose([r["score"] for r in on_ray], [r["score"] for r in local], atol=1e-6)
    # The scores are the cross-encoder's, not cosine similarities.
    ce = CrossEncoder(str(tiny_model_path), device="cpu")
    sample = on_ray[:6]
    expected = ce.predict([(r["anchor"], r["positive"]) for r in sample])
    np.testing.assert_allclose([r["score"] for r in sample], expected, atol=1e-5)


def test_ray_dataset_input_and_parquet_output(ray_session, wordnet_500, tmp_path):
    import datasets
    import ray

    pairs, corpus = wordnet_500
    pairs = pairs.head(150)
    kw = dict(
        corpus=corpus, output_format="n-tuple", output_scores=True, cache_folder=str(tmp_path / "cache"), verbose=False
    )
    expected = mine_hard_negatives(pairs, ref.cheap_embed, execution="local", **kw).to_list()
    out = mine_hard_negatives(
        ray.data.from_pandas(pairs),
        ref.cheap_embed,
        execution="ray",
        num_workers=1,
        output_path=str(tmp_path / "out"),
        **kw,
    )
    files = sorted(str(p) for p in Path(out).glob("part-*.parquet"))
    assert datasets.Dataset.from_parquet(files).to_list() == expected


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA GPU")
def test_gpu_actors_and_gpu_search_match_cpu(ray_session, wordnet_500):
    pairs, corpus = wordnet_500
    kw = dict(corpus=corpus, relative_margin=0.05, output_format="labeled-list", output_scores=True, verbose=False)
    cpu = mine_hard_negatives(pairs, ref.cheap_embed, execution="ray", use_gpu=False, **kw).to_list()
    gpu = mine_hard_negatives(pairs, ref.cheap_embed, execution="ray", use_gpu=True, **kw).to_list()
    assert [r["positive"] for r in gpu] == [r["positive"] for r in cpu]
