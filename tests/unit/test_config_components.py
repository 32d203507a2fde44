"""The one resolver of class names in configs (registry name, alias, dotted path, register()) and the
typed RunSpec that parsing returns."""

from __future__ import annotations

import pytest
import torch

from raycross import config as cfg
from raycross.config import ConfigError, components
from raycross.config.build import build_loss, build_model, model_kwargs


def _train(**sections):
    base = {"model": {"name_or_path": "org/model"}, "data": {"train": {"bundled": "wordnet-mini/train.parquet"}},
            "loss": {"name": "BinaryCrossEntropyLoss"}, "training": {"output_dir": "out"}}
    base.update(sections)
    return base


def test_registry_names_aliases_and_dotted_paths_resolve_to_the_same_class():
    from raycross.evaluation import CrossEncoderRerankingEvaluator
    from raycross.losses import MSELoss

    assert components.find("loss", "MSELoss", "loss.name") is MSELoss
    assert components.find("loss", "raycross.losses.MSELoss", "loss.name") is MSELoss
    assert components.find("evaluator", "Reranking", "evaluator.type") is CrossEncoderRerankingEvaluator
    assert components.find("evaluator", "raycross.evaluation.CrossEncoderRerankingEvaluator", "e") is CrossEncoderRerankingEvaluator
    with pytest.raises(ConfigError) as info:
        components.find("loss", "raycross.losses.NoSuchLoss", "loss.name")
    assert info.value.key == "loss.name" and "cannot import" in str(info.value)
    with pytest.raises(ConfigError, match="only torch"):
        components.find("loss", "subprocess.Popen", "loss.name")


def test_component_builds_nested_components(tiny_model):
    spec = cfg.parse_config(_train(loss={"name": "LambdaLoss", "kwargs": {
        "weighting_scheme": {"name": "NDCGLoss2PPScheme", "kwargs": {"mu": 5.0}}, "activation_fn": "torch.nn.Identity"}}),
        "train")
    loss = build_loss(spec.loss, tiny_model)
    assert type(loss).__name__ == "LambdaLoss" and loss.model is tiny_model
    assert type(loss.weighting_scheme).__name__ == "NDCGLoss2PPScheme" and loss.weighting_scheme.mu == 5.0
    assert isinstance(loss.activation_fn, torch.nn.Identity)


def test_registered_class_is_nameable_with_its_kwargs_checked(tiny_model, monkeypatch):
    from raycross.losses import BinaryCrossEntropyLoss

    class ScaledLoss(BinaryCrossEntropyLoss):
        def __init__(self, model, scale: float = 1.0):
            super().__init__(model)
            self.scale = scale

    monkeypatch.setitem(components.KINDS["loss"].extra, "ScaledLoss", ScaledLoss)  # what register() does
    spec = cfg.parse_config(_train(loss={"name": "ScaledLoss", "kwargs": {"scale": 2.0}}), "train")
    assert build_loss(spec.loss, tiny_model).scale == 2.0
    with pytest.raises(ConfigError) as info:
        cfg.validate_config(_train(loss={"name": "ScaledLoss", "kwargs": {"scal": 2.0}}), "train")
    assert info.value.key == "loss.kwargs.scal" and "did you mean 'scale'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        cfg.validate_config(_train(loss={"name": "ScaledLos"}), "train")
    assert "did you mean 'ScaledLoss'" in str(info.value)


def test_register_adds_to_the_registry(monkeypatch):
    monkeypatch.setattr(components.KINDS["object"], "extra", {})
    components.register("object", "MyActivation", torch.nn.Tanh)
    assert components.find("object", "MyActivation", "model.activation_fn") is torch.nn.Tanh
    with pytest.raises(ValueError, match="kind: expected one of"):
        components.register("optimizer", "x", object)


def test_parse_config_returns_typed_sections(tiny_model_path):
    spec = cfg.parse_config(_train(
        model={"name_or_path": str(tiny_model_path), "activation_fn": "torch.nn.Identity", "max_length": 32},
        evaluator=[{"type": "reranking", "data": {"bundled": "wordnet-mini/eval.parquet"}}],
        teacher={"model": str(tiny_model_path)}), "train")
    assert spec.command == "train" and dict(spec) == spec.raw and spec["training"] == {"output_dir": "out"}
    assert spec.training.output_dir == "out"  # CrossEncoderTrainingArguments, built once
    assert spec.data.train.kind == "bundled" and spec.data.eval is None
    assert spec.evaluator[0].data_args == ("samples",)
    assert (spec.teacher.batch_size, spec.teacher.label_column, spec.teacher.apply_activation) == (32, "scores", False)
    assert isinstance(model_kwargs(spec.model)["activation_fn"], torch.nn.Identity)
    model = build_model(spec.model)
    assert model.max_length == 32 and isinstance(model.activation_fn, torch.nn.Identity)
