"""Layer 3 of the config: a parsed :class:`~raycross.config.spec.RunSpec` -> the objects a run uses
(model, loss, evaluator, and with :mod:`raycross.config.prepare` the training data).

``raycross train`` and ``raycross tune`` both go through :func:`build_training` / the same data
preparation, so a recipe trains the same way in a single run and in every sweep trial.

Example:
    >>> spec = parse_config(load_config("jobs/configs/reranker_bce.yaml"), "train")  # doctest: +SKIP
    >>> parts = build_training(spec)  # doctest: +SKIP
    >>> CrossEncoderTrainer(**parts.trainer_kwargs()).train()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raycross.config.components import Component
from raycross.config.errors import ConfigError
from raycross.config.prepare import prepare_training_data
from raycross.config.spec import EvaluatorSpec, ModelSpec, RunSpec
from raycross.data import split_columns


def model_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """The CrossEncoder keyword arguments of a `model` section (named classes built).

    Example:
        >>> model_kwargs(ModelSpec.parse({"name_or_path": "org/m", "activation_fn": "torch.nn.Identity"}))
        {'activation_fn': Identity()}
    """
    return {k: v.build() if isinstance(v, Component) else v for k, v in spec.kwargs.items()}


def build_model(spec: ModelSpec, **overrides: Any):
    """A CrossEncoder from the `model` section (``overrides`` win over its keys).

    Example:
        >>> model = build_model(ModelSpec.parse({"name_or_path": "outputs/reranker-bce"}))  # doctest: +SKIP
    """
    from raycross.model import CrossEncoder

    return CrossEncoder(spec.ref.resolve("model"), **{**model_kwargs(spec), **overrides})


def build_loss(loss: Component | Mapping[str, Component], model: Any):
    """The loss (or {dataset name: loss}) of the `loss` section, bound to ``model``.

    Example:
        >>> loss = build_loss(parse_loss({"name": "BinaryCrossEntropyLoss"}), model)  # doctest: +SKIP
    """
    if isinstance(loss, Mapping):
        return {name: sub.build(model) for name, sub in loss.items()}
    return loss.build(model)


def build_evaluator(spec: EvaluatorSpec | list[EvaluatorSpec] | None):
    """The evaluator of the `evaluator` section (a list becomes a SequentialEvaluator; None stays None).

    The data arguments come from the evaluator's source: ``samples`` are its rows; ``sentence_pairs`` are
    its two input columns and ``labels``/``scores`` its label column.

    Example:
        >>> ev = build_evaluator(EvaluatorSpec.parse({"type": "reranking", "data": {"bundled": "wordnet-mini/eval.parquet"}}, "evaluator"))  # doctest: +SKIP
    """
    if spec is None:
        return None
    if isinstance(spec, list):
        from raycross.evaluation import SequentialEvaluator

        return SequentialEvaluator([build_evaluator(s) for s in spec])
    if not spec.data_args:
        return spec.component.build()
    dataset = spec.data.load()
    if spec.data_args == ("samples",):
        return spec.component.build(dataset.to_list())
    inputs, label = split_columns(dataset.column_names)
    if len(inputs) != 2 or label is None:
        raise ConfigError(
            f"{spec.component.key}.data.columns",
            f"{spec.component.name} needs two text columns and a label/score column, found inputs {inputs} and "
            f"label {label!r}",
        )
    return spec.component.build(list(zip(dataset[inputs[0]], dataset[inputs[1]])), dataset[label])


@dataclass
class TrainingParts:
    """Everything a CrossEncoderTrainer run of a config needs, built once."""

    model: Any
    args: Any
    train_dataset: Any
    eval_dataset: Any
    loss: Any
    evaluator: Any
    callbacks: list[Any] = field(default_factory=list)

    def trainer_kwargs(self) -> dict[str, Any]:
        return {"model": self.model, "args": self.args, "train_dataset": self.train_dataset,
                "eval_dataset": self.eval_dataset, "loss": self.loss, "evaluator": self.evaluator,
                "callbacks": self.callbacks}


def build_training(spec: RunSpec) -> TrainingParts:
    """Prepare the data (load, mine, teacher scores), then build the model, loss and evaluator.

    Example:
        >>> parts = build_training(parse_config(config, "train"))  # doctest: +SKIP
    """
    train_ds, eval_ds = prepare_training_data(spec)
    model = build_model(spec.model)
    return TrainingParts(model=model, args=spec.training, train_dataset=train_ds, eval_dataset=eval_ds,
                         loss=build_loss(spec.loss, model), evaluator=build_evaluator(spec.evaluator))
