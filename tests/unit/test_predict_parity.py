"""predict / rank inputs and arguments as sentence-transformers 6.2 takes them, compared with 6.2 on the
same saved model: numpy arrays, single pairs, lists of lists, old keyword names, max_length on the
tokenizer, default_activation_function, and multi-process scoring (device=[...], pool=...)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from raycross import CrossEncoder

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAIRS = [["a man plays with a dog", "the dog runs in the street"], ["a cat", "a red car near the house"],
         ["what is python", "python is a program used to make things"], ["water", "the child drinks water"]]


@pytest.fixture(scope="module")
def saved(tiny_model_path, tmp_path_factory):
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    with torch.no_grad():
        model.hf_model.classifier.weight.mul_(100.0)  # spread the scores: distinct ranks
    path = tmp_path_factory.mktemp("predict-parity")
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def pair_of_models(saved):
    return CrossEncoder(saved, device="cpu"), STCrossEncoder(saved, device="cpu")


@pytest.mark.parametrize("form", ["list_of_lists", "list_of_tuples", "numpy_2d", "numpy_object_2d"])
def test_batch_input_forms_match_st(pair_of_models, form):
    ours, theirs = pair_of_models
    inputs = {"list_of_lists": PAIRS, "list_of_tuples": [tuple(p) for p in PAIRS],
              "numpy_2d": np.array(PAIRS), "numpy_object_2d": np.array(PAIRS, dtype=object)}[form]
    expected = theirs.predict(inputs)
    got = ours.predict(inputs)
    assert got.shape == expected.shape == (len(PAIRS),)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("form", ["list", "tuple", "numpy_1d"])
def test_single_pair_gives_a_scalar_like_st(pair_of_models, form):
    ours, theirs = pair_of_models
    pair = {"list": PAIRS[0], "tuple": tuple(PAIRS[0]), "numpy_1d": np.array(PAIRS[0])}[form]
    expected, got = theirs.predict(pair), ours.predict(pair)
    assert np.ndim(got) == np.ndim(expected) == 0
    assert float(got) == pytest.approx(float(expected), abs=1e-5)
    assert isinstance(ours.predict(pair, convert_to_tensor=True), torch.Tensor)


def test_empty_and_convert_flags_like_st(pair_of_models):
    ours, theirs = pair_of_models
    assert ours.predict([]).shape == theirs.predict([]).shape == (0,)
    as_list = ours.predict(PAIRS, convert_to_numpy=False)
    assert isinstance(as_list, list) and isinstance(as_list[0], torch.Tensor)
    assert isinstance(theirs.predict(PAIRS, convert_to_numpy=False), list)


def test_old_keyword_names_warn_and_work(pair_of_models, caplog):
    ours, theirs = pair_of_models
    with caplog.at_level(logging.WARNING):
        got = ours.predict(sentences=PAIRS, activation_fct=torch.nn.Identity(), num_workers=2)
    assert "`sentences` argument was renamed" in caplog.text and "`activation_fct` argument was renamed" in caplog.text
    assert "`num_workers` argument is deprecated" in caplog.text
    np.testing.assert_allclose(got, theirs.predict(PAIRS, activation_fn=torch.nn.Identity()), atol=1e-5)
    np.testing.assert_allclose(ours.predict(inputs=PAIRS), theirs.predict(inputs=PAIRS), atol=1e-5)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['batchsize'\\]"):
        ours.predict(PAIRS, batchsize=2)


def test_rank_drops_convert_flags_with_a_warning_like_st(pair_of_models, caplog):
    ours, theirs = pair_of_models
    query, docs = "a man", [p[1] for p in PAIRS]
    with caplog.at_level(logging.WARNING):
        got = ours.rank(query, docs, convert_to_numpy=True, convert_to_tensor=False, apply_softmax=True,
                        return_documents=True)
    for name in ("convert_to_numpy", "convert_to_tensor", "apply_softmax"):
        assert f"CrossEncoder.rank `{name}` argument is deprecated" in caplog.text
    expected = theirs.rank(query, docs, convert_to_numpy=True, return_documents=True)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in expected]
    assert [r["text"] for r in got] == [r["text"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert all(type(r["score"]) is float for r in got)


def test_max_length_lives_on_the_tokenizer_like_st(saved):
    ours = CrossEncoder(saved, device="cpu", max_length=8)
    theirs = STCrossEncoder(saved, device="cpu", max_length=8)
    assert ours.tokenizer.model_max_length == theirs.tokenizer.model_max_length == 8
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=1e-5)
    ours.max_length = 12
    assert ours.tokenizer.model_max_length == 12 and ours.max_seq_length == 12
    ours.tokenizer.model_max_length = 6
    theirs.max_seq_length = 6
    assert ours.max_length == 6 and ours.preprocess(PAIRS)["input_ids"].shape[1] == 6
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=1e-5)
    with pytest.raises(ValueError, match="max_length"):
        ours.max_length = 0


def test_default_activation_function_old_name(saved, caplog):
    with caplog.at_level(logging.WARNING):
        ours = CrossEncoder(saved, device="cpu", default_activation_function=torch.nn.Identity())
    assert "`default_activation_function` argument was renamed" in caplog.text
    theirs = STCrossEncoder(saved, device="cpu", default_activation_function=torch.nn.Identity())
    assert isinstance(ours.activation_fn, torch.nn.Identity) and isinstance(theirs.activation_fn, torch.nn.Identity)
    for model in (ours, theirs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert isinstance(model.default_activation_function, torch.nn.Identity)
        assert any("Please use `activation_fn` instead" in str(w.message) for w in caught)
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=1e-5)
    assert isinstance(ours.get_default_activation_fn(), torch.nn.Sigmoid)
    legacy = CrossEncoder(model_name=saved, device="cpu", automodel_args={}, tokenizer_args={})
    np.testing.assert_allclose(legacy.predict(PAIRS), theirs.predict(PAIRS, activation_fn=torch.nn.Sigmoid()), atol=1e-5)


def test_multi_process_pool_and_device_list_match_single_process(pair_of_models):
    ours, _ = pair_of_models
    many = PAIRS * 5
    expected = ours.predict(many)
    pool = ours.start_multi_process_pool(["cpu", "cpu"])
    try:
        np.testing.assert_allclose(ours.predict(many, pool=pool, chunk_size=3), expected, atol=1e-5)
        ranked = ours.rank("a man", [p[1] for p in PAIRS], pool=pool)
        local = ours.rank("a man", [p[1] for p in PAIRS])
        assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in local]
        assert [r["score"] for r in ranked] == pytest.approx([r["score"] for r in local], abs=1e-5)
        single = ours.predict(PAIRS[0], pool=pool)
        assert np.ndim(single) == 0
        with pytest.raises(ValueError, match="chunk_size"):
            ours.predict(many, pool=pool, chunk_size=0)
    finally:
        ours.stop_multi_process_pool(pool)
    np.testing.assert_allclose(ours.predict(many, device=["cpu"]), expected, atol=1e-5)
