"""Loss validation (columns, labels, num_labels), defaults and model-card config of every loss."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest
import torch
from torch import nn

import raycross.losses as L
from raycross import CrossEncoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


ONE_LABEL = [
    "BinaryCrossEntropyLoss", "MSELoss", "MarginMSELoss", "MultipleNegativesRankingLoss",
    "CachedMultipleNegativesRankingLoss", "ListNetLoss", "ListMLELoss", "PListMLELoss", "LambdaLoss",
    "RankNetLoss", "ADRMSELoss",
]
LISTWISE = ["ListNetLoss", "ListMLELoss", "PListMLELoss", "LambdaLoss", "RankNetLoss", "ADRMSELoss"]


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return CrossEncoder(str(tiny_model_path), device="cpu")


@pytest.fixture(scope="module")
def model3(tiny_model_path_3labels):
    return CrossEncoder(str(tiny_model_path_3labels), device="cpu")


def test_every_public_name_is_importable():
    names = [
        "BinaryCrossEntropyLoss", "CrossEntropyLoss", "MultipleNegativesRankingLoss",
        "CachedMultipleNegativesRankingLoss", "MSELoss", "MarginMSELoss", "ListNetLoss", "ListMLELoss",
        "PListMLELoss", "PListMLELambdaWeight", "LambdaLoss", "NoWeightingScheme", "NDCGLoss1Scheme",
        "NDCGLoss2Scheme", "LambdaRankScheme", "NDCGLoss2PPScheme", "RankNetLoss", "ADRMSELoss",
    ]
    assert set(names) <= set(L.__all__)
    for name in L.__all__:
        assert getattr(L, name).__module__.startswith("raycross.losses")


@pytest.mark.parametrize("name", ONE_LABEL)
def test_one_label_losses_reject_multi_label_models(name, model3):
    with pytest.raises(ValueError, match=rf"{name} needs a model with num_labels=1.*num_labels=3"):
        getattr(L, name)(model3)


def test_cross_entropy_needs_several_labels(model, model3):
    with pytest.raises(ValueError, match=r"CrossEntropyLoss needs a model with num_labels >= 2.*num_labels=1"):
        L.CrossEntropyLoss(model)
    assert L.CrossEntropyLoss(model3).model is model3


def test_loss_rejects_something_that_is_not_a_cross_encoder():
    with pytest.raises(TypeError, match="BinaryCrossEntropyLoss expects a raycross CrossEncoder"):
        L.BinaryCrossEntropyLoss(nn.Linear(2, 1))


# ------------------------------------------------------------------------------------ validate_columns
@pytest.mark.parametrize(
    "name, columns, label, match",
    [
        ("BinaryCrossEntropyLoss", ["q", "a", "b"], "label",
         r"BinaryCrossEntropyLoss needs exactly 2 input columns.*3 input column\(s\) \['q', 'a', 'b'\]"),
        ("BinaryCrossEntropyLoss", ["q", "a"], None, r"BinaryCrossEntropyLoss needs a label column.*\['q', 'a'\]"),
        ("MSELoss", ["q"], "score", r"MSELoss needs exactly 2 input columns.*\['q'\]"),
        ("MarginMSELoss", ["q", "pos"], "label", r"MarginMSELoss needs at least 3 input columns"),
        ("MarginMSELoss", ["q", "pos", "neg"], None, r"MarginMSELoss needs a label column"),
        ("MultipleNegativesRankingLoss", ["q"], None, r"MultipleNegativesRankingLoss needs at least 2 input columns"),
        ("CachedMultipleNegativesRankingLoss", ["q"], None, r"CachedMultipleNegativesRankingLoss needs at least 2"),
        ("LambdaLoss", ["q", "docs", "extra"], "labels", r"LambdaLoss needs exactly 2 input columns, \(query, \[doc1"),
        ("ListNetLoss", ["q", "docs"], None, r"ListNetLoss needs a label column.*one list of relevance scores"),
    ],
)
def test_validate_columns_names_loss_columns_and_need(name, columns, label, match, model):
    with pytest.raises(ValueError, match=match):
        getattr(L, name)(model).validate_columns(columns, label)


def test_validate_columns_cross_entropy(model3):
    loss = L.CrossEntropyLoss(model3)
    loss.validate_columns(["p", "h"], "label", {"p": "a", "h": "b", "label": 2})
    loss.validate_columns(["p", "h"], "label", {"p": "a", "h": "b", "label": [0.1, 0.2, 0.7]})
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label column 'label'.*num_labels=3.*int 3"):
        loss.validate_columns(["p", "h"], "label", {"p": "a", "h": "b", "label": 3})
    with pytest.raises(ValueError, match=r"class probabilities of length 2; the model has num_labels=3"):
        loss.validate_columns(["p", "h"], "label", {"p": "a", "h": "b", "label": [0.5, 0.5]})


def test_validate_columns_accepts_good_rows_including_numpy_values(model):
    L.BinaryCrossEntropyLoss(model).validate_columns(["q", "p"], "label", {"q": "x", "p": "y", "label": np.float32(1)})
    L.MarginMSELoss(model).validate_columns(["q", "p", "n"], "score", {"q": "x", "p": "y", "n": "z", "score": 1.5})
    L.MarginMSELoss(model).validate_columns(["q", "p", "n1", "n2"], "scores",
                                            {"q": "x", "p": "y", "n1": "z", "n2": "w", "scores": [3.0, 1.0, 0.0]})
    row = {"query": "q", "docs": np.array(["a", "b"]), "labels": np.array([1.0, 0.0])}  # as Ray Data returns rows
    for name in LISTWISE:
        assert getattr(L, name)(model).validate_columns(["query", "docs"], "labels", row) is None


@pytest.mark.parametrize(
    "name, columns, label, row, match",
    [
        ("BinaryCrossEntropyLoss", ["q", "p"], "label", {"q": "x", "p": "y", "label": "yes"},
         r"BinaryCrossEntropyLoss: label column 'label' must hold one number per pair.*str 'yes'"),
        ("BinaryCrossEntropyLoss", ["q", "p"], "label", {"q": "x", "p": ["y"], "label": 1},
         r"BinaryCrossEntropyLoss: input column 'p' must hold one text per row.*list"),
        ("MSELoss", ["q", "p"], "label", {"q": "x", "label": 1}, r"MSELoss: sample_row lacks the column\(s\) \['p'\]"),
        ("MarginMSELoss", ["q", "p", "n1", "n2"], "label", {"q": "x", "p": "y", "n1": "z", "n2": "w", "label": 1.0},
         r"MarginMSELoss: with 4 input columns \(2 other document\(s\)\), label column 'label' must hold 2 margin"),
        ("MarginMSELoss", ["q", "p", "n"], "label", {"q": "x", "p": "y", "n": "z", "label": [1, 2, 3]},
         r"must hold 1 margin\(s\) or 2 scores"),
        ("ListNetLoss", ["q", "d"], "labels", {"q": "x", "d": "not a list", "labels": [1]},
         r"ListNetLoss: column 'd' must hold a list of document texts per row, found str"),
        ("LambdaLoss", ["q", "d"], "labels", {"q": "x", "d": ["a", "b"], "labels": [1]},
         r"LambdaLoss: label column 'labels' holds 1 labels for 2 documents"),
        ("ADRMSELoss", ["q", "d"], "labels", {"q": "x", "d": ["a", "b"], "labels": 1.0},
         r"ADRMSELoss: label column 'labels' must hold one list of relevance scores per query"),
        ("PListMLELoss", ["q", "d"], "labels", {"q": "x", "d": [], "labels": []},
         r"PListMLELoss: column 'd' holds an empty document list"),
    ],
)
def test_validate_columns_checks_the_sample_row(name, columns, label, row, match, model):
    with pytest.raises(ValueError, match=match):
        getattr(L, name)(model).validate_columns(columns, label, row)


def test_label_column_for_a_label_free_loss_warns(model, caplog):
    with caplog.at_level(logging.WARNING):
        L.MultipleNegativesRankingLoss(model).validate_columns(["q", "p"], "label", {"q": "a", "p": "b", "label": 0})
    assert "MultipleNegativesRankingLoss takes no label" in caplog.text and "'label'" in caplog.text


# ------------------------------------------------------------------------------------ forward checks
def test_forward_errors_name_the_loss_and_the_problem(model, model3):
    q, p = ["a man", "a dog"], ["a woman", "a cat"]
    bce = L.BinaryCrossEntropyLoss(model)
    with pytest.raises(ValueError, match=r"BinaryCrossEntropyLoss needs exactly 2 input columns.*batch has 3"):
        bce([q, p, p], torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"BinaryCrossEntropyLoss needs labels holding one number per pair"):
        bce([q, p], None)
    with pytest.raises(ValueError, match=r"BinaryCrossEntropyLoss expects 2 labels.*found 3"):
        bce([q, p], torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"one value per row, found column sizes \[2, 1\]"):
        bce([q, p[:1]], torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: class labels must lie in \[0, 3\).*\[0, 5\]"):
        L.CrossEntropyLoss(model3)([q, p], torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"MarginMSELoss: labels of shape \(2, 3\) do not match 2 rows with 1 other"):
        L.MarginMSELoss(model)([q, p, p], torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"MultipleNegativesRankingLoss needs at least 2 input columns"):
        L.MultipleNegativesRankingLoss(model)([q])


@pytest.mark.parametrize("name", LISTWISE)
def test_listwise_forward_errors(name, model):
    loss = getattr(L, name)(model)
    q, docs = ["a man"], [["a woman", "a dog"]]
    with pytest.raises(ValueError, match=rf"{name} needs labels holding one list of numbers per query.*a single value"):
        loss([q, docs], torch.tensor([1.0]))
    with pytest.raises(ValueError, match=rf"{name}: query 0 has 2 documents but 3 labels"):
        loss([q, docs], [[1, 0, 0]])
    with pytest.raises(ValueError, match=rf"{name}: query 0 has an empty document list"):
        loss([q, [[]]], [[]])
    with pytest.raises(ValueError, match=rf"{name} needs exactly 2 input columns"):
        loss([q, docs, docs], [[1, 0]])
    with pytest.raises(ValueError, match=rf"{name}: input column 1 must hold a list of documents per query"):
        loss([q, ["a woman"]], [[1]])


# ------------------------------------------------------------------------------------ defaults and config
def defaults(cls):
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_defaults_follow_sentence_transformers():
    mnrl = defaults(L.MultipleNegativesRankingLoss)
    assert mnrl["num_negatives"] == 4 and mnrl["scale"] == 10.0 and isinstance(mnrl["activation_fn"], nn.Sigmoid)
    cached = defaults(L.CachedMultipleNegativesRankingLoss)
    assert cached["mini_batch_size"] == 32 and cached["num_negatives"] == 4 and cached["scale"] == 10.0
    assert isinstance(defaults(L.BinaryCrossEntropyLoss)["activation_fn"], nn.Identity)
    assert defaults(L.BinaryCrossEntropyLoss)["pos_weight"] is None
    lam = defaults(L.LambdaLoss)
    assert isinstance(lam["weighting_scheme"], L.NDCGLoss2PPScheme) and lam["weighting_scheme"].mu == 10.0
    assert (lam["k"], lam["sigma"], lam["eps"], lam["reduction_log"], lam["mini_batch_size"]) == (
        None, 1.0, 1e-10, "binary", None)
    assert isinstance(defaults(L.PListMLELoss)["lambda_weight"], L.PListMLELambdaWeight)
    assert defaults(L.PListMLELoss)["respect_input_order"] is True
    assert defaults(L.ADRMSELoss)["alpha"] == 1.0
    for name in LISTWISE:
        d = defaults(getattr(L, name))
        assert d["mini_batch_size"] is None and isinstance(d["activation_fn"], nn.Identity)


def test_config_dicts(model, model3):
    assert L.MultipleNegativesRankingLoss(model).get_config_dict() == {
        "scale": 10.0, "num_negatives": 4, "activation_fn": "torch.nn.modules.activation.Sigmoid"}
    assert L.CachedMultipleNegativesRankingLoss(model, mini_batch_size=8).get_config_dict()["mini_batch_size"] == 8
    assert L.LambdaLoss(model, weighting_scheme=L.LambdaRankScheme(), k=5).get_config_dict() == {
        "weighting_scheme": "raycross.losses.lambda_loss.LambdaRankScheme", "k": 5, "sigma": 1.0, "eps": 1e-10,
        "reduction_log": "binary", "activation_fn": "torch.nn.modules.linear.Identity", "mini_batch_size": None}
    assert "weighting_scheme" not in L.RankNetLoss(model).get_config_dict()
    assert "lambda_weight" not in L.ListMLELoss(model).get_config_dict()
    assert L.PListMLELoss(model).get_config_dict()["lambda_weight"] == "raycross.losses.plist_mle.PListMLELambdaWeight"
    assert L.ADRMSELoss(model, alpha=2.0).get_config_dict()["alpha"] == 2.0
    assert L.CrossEntropyLoss(model3).get_config_dict() == {"activation_fn": "torch.nn.modules.linear.Identity"}
    assert L.MarginMSELoss(model).get_config_dict() == {"activation_fn": "torch.nn.modules.linear.Identity"}


def test_invalid_hyperparameters(model):
    with pytest.raises(ValueError, match="reduction_log must be 'natural' or 'binary'"):
        L.LambdaLoss(model, reduction_log="ten")
    with pytest.raises(ValueError, match="k must be a positive int or None"):
        L.RankNetLoss(model, k=0)
    with pytest.raises(ValueError, match="mini_batch_size must be a positive int"):
        L.CachedMultipleNegativesRankingLoss(model, mini_batch_size=0)
    with pytest.raises(ValueError, match="num_negatives must be a non-negative int or None"):
        L.MultipleNegativesRankingLoss(model, num_negatives=-1)


@pytest.mark.parametrize("name", ONE_LABEL + ["CrossEntropyLoss"])
def test_docstring_has_the_input_table(name):
    doc = getattr(L, name).__doc__
    assert "| Inputs" in doc and "| Labels" in doc and "Number of Model Output Labels" in doc and "Example" in doc
