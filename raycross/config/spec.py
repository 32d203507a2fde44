"""Layer 2 of the config: the plain mapping -> a typed :class:`RunSpec`. Parsing is validation: every
section a command uses is checked (naming the bad key, with close matches) before any model, data or
Ray worker is loaded; what comes out is typed and ready for :mod:`raycross.config.build`.

A config is a YAML mapping of sections; every command reads the sections it needs and ignores the
others, so one recipe file serves ``train``, ``mine`` and ``evaluate``::

    model:      {name_or_path: <dir | hub id | builtin:minilm>, offline: <used when HF_HUB_OFFLINE=1>,
                 num_labels, max_length, ... (any CrossEncoder argument)}
    data:       {train: <source> | {name: <source>, ...}, eval: <source>, corpus: <source>, input: <source>}
    loss:       {name: <loss name or dotted path>, kwargs: {...}}  (or {dataset name: {name, kwargs}})
    evaluator:  {type: <evaluator name, alias or dotted path>, data: <source>, kwargs: {...}}  (or a list)
    training:   {<CrossEncoderTrainingArguments field>: value, ...}
    mining:     {model: <embedder>, cross_encoder: <model>, <mine_hard_negatives kwargs (output_path: a dir)>}
    teacher:    {model: <cross-encoder>, batch_size, apply_activation, label_column, output_path, execution,
                 num_workers, use_gpu, chunk_rows, replace_labels}   (distillation labels, raycross.score_with_teacher)
    tune:       {search_space: {<dotted key>: <distribution>}, metric, mode, num_samples, scheduler, ...}
    evaluate:   {output_path}     predict: {output_path, batch_size, ...}     quickstart: {...}

Sources: :mod:`raycross.config.sources`; model references: :mod:`raycross.config.models`; class names
(losses, evaluators, activations): :mod:`raycross.config.components`.

Example:
    >>> spec = parse_config({"model": {"name_or_path": "org/m"}, "data": {"input": {"bundled": "wordnet-mini/eval.parquet"}}}, "predict")
    >>> spec.model.ref.name_or_path, spec.data.input.kind
    ('org/m', 'bundled')
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from raycross.config.components import Component, find, resolve
from raycross.config.errors import (
    ConfigError,
    check_keys,
    check_kwargs,
    expect,
    expect_mapping,
    expect_positive_int,
    signature_params,
)
from raycross.config.load import read_config
from raycross.config.models import MODEL_REF_KEYS, ModelRef
from raycross.config.sources import SourceSpec, is_single_source
from raycross.data import LABEL_COLUMNS

COMMANDS = ("train", "mine", "score", "evaluate", "predict", "tune", "quickstart")
SECTIONS = ("description", "model", "data", "loss", "evaluator", "training", "mining", "teacher", "tune",
            "evaluate", "predict", "quickstart")
REQUIRED_SECTIONS = {
    "train": ("model", "data", "loss", "training"),
    "mine": ("data", "mining"),
    "score": ("data", "teacher"),
    "evaluate": ("model", "evaluator"),
    "predict": ("model", "data"),
    "tune": ("model", "data", "loss", "training", "tune"),
    "quickstart": (),
}
# Sections each command validates (and uses); the others are ignored so that one file serves several.
USED_SECTIONS = {
    "train": ("model", "data", "loss", "evaluator", "training", "mining", "teacher"),
    "mine": ("data", "mining"),
    "score": ("data", "mining", "teacher"),
    "evaluate": ("model", "evaluator", "evaluate"),
    "predict": ("model", "data", "predict"),
    "tune": ("model", "data", "loss", "evaluator", "training", "mining", "teacher", "tune"),
    "quickstart": ("quickstart",),
}
NEEDED_DATA = {"train": ("train",), "tune": ("train",), "mine": ("train",), "score": ("train",), "predict": ("input",)}
DATA_KEYS = ("train", "eval", "corpus", "input")
# Loss keyword arguments that take an object: given in YAML as a name or {name, kwargs}.
LOSS_OBJECT_ARGS = ("activation_fn", "weighting_scheme", "lambda_weight")
# Losses whose **kwargs go to a torch loss (whose arguments are then valid keys too).
LOSS_FORWARDED_KWARGS = {"BinaryCrossEntropyLoss": "BCEWithLogitsLoss", "CrossEntropyLoss": "CrossEntropyLoss",
                         "MSELoss": "MSELoss", "MarginMSELoss": "MSELoss"}
# Evaluator constructor arguments a config fills from the evaluator's `data` source (never `kwargs`).
EVALUATOR_DATA_PARAMS = ("samples", "sentence_pairs", "labels", "scores")
MINING_EXTRA_KEYS = ("model", "cross_encoder")
MINING_FROM_CONFIG = ("dataset", "model", "corpus", "cross_encoder")
TEACHER_KEYS = ("model", "batch_size", "apply_activation", "label_column", "output_path", "execution", "num_workers",
                "use_gpu", "chunk_rows", "replace_labels")
PREDICT_KEYS = ("output_path", "batch_size", "apply_softmax", "activation_fn", "show_progress_bar",
                "num_actors", "num_cpus_per_actor", "num_gpus_per_actor")
EVALUATE_KEYS = ("output_path",)


# ------------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class ModelSpec:
    """The `model` section: where the weights come from and the other CrossEncoder arguments."""

    ref: ModelRef
    kwargs: dict[str, Any] = field(default_factory=dict)  # activation_fn is a Component

    @classmethod
    def parse(cls, value: Any, key: str = "model") -> ModelSpec:
        from raycross.model import CrossEncoder

        value = expect_mapping(value, key)
        names, _ = signature_params(CrossEncoder, skip=["model_name_or_path"])
        check_keys(value, [*MODEL_REF_KEYS, *names], key)
        ref = ModelRef.parse({k: value[k] for k in MODEL_REF_KEYS if k in value}, key)
        expect_positive_int(value.get("num_labels"), f"{key}.num_labels")
        expect_positive_int(value.get("max_length"), f"{key}.max_length")
        for name in ("model_kwargs", "tokenizer_kwargs", "config_kwargs", "model_card_data"):
            if value.get(name) is not None:
                expect_mapping(value[name], f"{key}.{name}")
        kwargs = {k: v for k, v in value.items() if k not in MODEL_REF_KEYS}
        if isinstance(kwargs.get("activation_fn"), (str, Mapping)):
            kwargs["activation_fn"] = resolve("object", kwargs["activation_fn"], f"{key}.activation_fn")
        return cls(ref, kwargs)


# ------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataSpec:
    """The `data` section: the training source (or {name: source}), eval, mining corpus, predict input."""

    train: SourceSpec | dict[str, SourceSpec] | None = None
    eval: SourceSpec | None = None
    corpus: SourceSpec | None = None
    input: SourceSpec | None = None

    @classmethod
    def parse(cls, value: Any, needed: Iterable[str] = ()) -> DataSpec:
        value = expect_mapping(value, "data")
        check_keys(value, DATA_KEYS, "data")
        for name in needed:
            if value.get(name) is None:
                raise ConfigError(f"data.{name}", "required: give a source such as {bundled: wordnet-mini/train.parquet}")
        parsed: dict[str, Any] = {}
        for name, source in value.items():
            if source is None:
                continue
            if name == "train" and isinstance(source, Mapping) and source and not is_single_source(source):
                parsed[name] = {ds: SourceSpec.parse(sub, f"data.train.{ds}") for ds, sub in source.items()}
            else:
                parsed[name] = SourceSpec.parse(source, f"data.{name}")
        return cls(**parsed)


# ------------------------------------------------------------------------------------------- loss
def parse_loss_component(value: Any, key: str) -> Component:
    """One ``{name, kwargs}`` loss: the class exists and every kwarg is one of its arguments.

    Example:
        >>> parse_loss_component({"name": "BinaryCrossEntropyLoss", "kwargs": {"pos_weight": 5}}, "loss").kwargs
        {'pos_weight': 5}
    """
    value = expect_mapping(value, key)
    check_keys(value, ("name", "kwargs"), key)
    if "name" not in value:
        raise ConfigError(f"{key}.name", "required: a loss from raycross.losses, e.g. BinaryCrossEntropyLoss")
    kwargs = expect_mapping(value.get("kwargs") or {}, f"{key}.kwargs")
    if "model" in kwargs:
        raise ConfigError(f"{key}.kwargs.model", "the model comes from the `model` section")
    cls = loss_class(value["name"], f"{key}.name")
    forwarded = LOSS_FORWARDED_KWARGS.get(cls.__name__)
    if forwarded is not None:
        import torch.nn

        forwarded = getattr(torch.nn, forwarded)
    return resolve("loss", value["name"], key, kwargs, skip=["model"], forwarded_to=forwarded, objects=LOSS_OBJECT_ARGS)


def parse_loss(value: Any) -> Component | dict[str, Component]:
    """The `loss` section: one loss, or {training dataset name: loss}."""
    value = expect_mapping(value, "loss")
    if "name" in value or "kwargs" in value:
        return parse_loss_component(value, "loss")
    if not value:
        raise ConfigError("loss.name", "required: a loss from raycross.losses, e.g. BinaryCrossEntropyLoss")
    return {name: parse_loss_component(sub, f"loss.{name}") for name, sub in value.items()}


def loss_class(name: Any, key: str) -> type:
    """The loss class a registry name or dotted path names (ConfigError with close matches otherwise).

    Example:
        >>> loss_class("LambdaLoss", "loss.name").__name__
        'LambdaLoss'
    """
    return find("loss", name, key)


def resolve_object_name(value: Any, key: str) -> tuple[Any, dict[str, Any]]:
    """A class named in YAML (``"torch.nn.Sigmoid"``, a raycross.losses name, or ``{name, kwargs}``) and its
    kwargs; instantiate with ``cls(**kwargs)``.

    Example:
        >>> resolve_object_name("torch.nn.Identity", "loss.kwargs.activation_fn")[0].__name__
        'Identity'
    """
    component = resolve("object", value, key)
    return component.target, dict(component.kwargs)


# -------------------------------------------------------------------------------------- evaluator
@dataclass(frozen=True)
class EvaluatorSpec:
    """One evaluator: its class and kwargs, and the source its data arguments are filled from."""

    component: Component
    data: SourceSpec | None
    data_args: tuple[str, ...]

    @classmethod
    def parse(cls, value: Any, key: str) -> EvaluatorSpec:
        value = expect_mapping(value, key)
        check_keys(value, ("type", "data", "kwargs"), key)
        if "type" not in value:
            from raycross.config.components import names

            raise ConfigError(f"{key}.type", f"required: one of {names('evaluator')}")
        target = find("evaluator", value["type"], f"{key}.type")
        params, _ = signature_params(target)
        data_args = tuple(p for p in params if p in EVALUATOR_DATA_PARAMS)
        name = target.__name__
        if data_args and value.get("data") is None:
            raise ConfigError(f"{key}.data", f"required: {name} takes its {' and '.join(data_args)} from a data source")
        if not data_args and value.get("data") is not None:
            raise ConfigError(f"{key}.data", f"{name} loads its own data; remove `data`")
        data = SourceSpec.parse(value["data"], f"{key}.data") if value.get("data") is not None else None
        kwargs = check_kwargs(value.get("kwargs") or {}, target, f"{key}.kwargs", skip=data_args)
        return cls(Component(target, kwargs, key), data, data_args)


def parse_evaluator(value: Any) -> EvaluatorSpec | list[EvaluatorSpec]:
    """The `evaluator` section: one spec or a non-empty list of them."""
    if isinstance(value, list):
        if not value:
            raise ConfigError("evaluator", "expected an evaluator spec or a non-empty list of them, found []")
        return [EvaluatorSpec.parse(v, f"evaluator.{i}") for i, v in enumerate(value)]
    return EvaluatorSpec.parse(value, "evaluator")


# ------------------------------------------------------------------------------------------ training
def training_fields() -> list[str]:
    """Field names of CrossEncoderTrainingArguments (the valid keys of the `training` section).

    Example:
        >>> "learning_rate" in training_fields()
        True
    """
    from raycross.training.arguments import CrossEncoderTrainingArguments

    return [f.name for f in fields(CrossEncoderTrainingArguments)]


def build_training_args(training: Mapping[str, Any]):
    """CrossEncoderTrainingArguments from the `training` section; bad values raise ConfigError.

    Example:
        >>> build_training_args({"output_dir": "out", "max_steps": 5}).max_steps
        5
    """
    from raycross.training.arguments import CrossEncoderTrainingArguments

    training = expect_mapping(training, "training")
    valid = training_fields()
    check_keys(training, valid, "training")
    if not training.get("output_dir"):
        raise ConfigError("training.output_dir", "required: where the model and checkpoints go (or pass --output-dir)")
    try:
        return CrossEncoderTrainingArguments(**training)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        name = message.split(":", 1)[0].strip()
        raise ConfigError(f"training.{name}" if name in valid else "training", message) from None


# ------------------------------------------------------------------------------------ mining, teacher
def mining_function():
    """``raycross.mining.mine_hard_negatives``.

    Example:
        >>> mining_function().__name__
        'mine_hard_negatives'
    """
    from raycross.mining import mine_hard_negatives

    return mine_hard_negatives


@dataclass(frozen=True)
class MiningSpec:
    """The `mining` section: the embedder, the optional rescoring cross-encoder, mine_hard_negatives options."""

    model: ModelRef
    cross_encoder: ModelRef | None
    options: dict[str, Any]

    @classmethod
    def parse(cls, value: Any, command: str) -> MiningSpec:
        from raycross.mining.options import MiningOptions

        value = expect_mapping(value, "mining")
        names, _ = signature_params(mining_function(), skip=MINING_FROM_CONFIG)
        check_keys(value, [*MINING_EXTRA_KEYS, *names], "mining")
        option_names = {f.name for f in fields(MiningOptions)}
        try:
            MiningOptions.create(**{k: v for k, v in value.items() if k in option_names})
        except (ValueError, TypeError) as exc:
            name = str(exc).split(":", 1)[0].strip()
            raise ConfigError(f"mining.{name}" if name in option_names else "mining", str(exc)) from None
        if value.get("model") is None:
            raise ConfigError("mining.model", "required: the embedding model used to retrieve candidates")
        model = ModelRef.parse(value["model"], "mining.model")
        cross = ModelRef.parse(value["cross_encoder"], "mining.cross_encoder") if value.get("cross_encoder") is not None else None
        out = value.get("output_path")
        if command == "mine" and not out:
            raise ConfigError("mining.output_path", "required: the directory the mined parquet files go to (or pass --output)")
        if out is not None:
            expect(out, str, "mining.output_path", "a directory path")
            if Path(out).suffix.lower() in (".parquet", ".jsonl", ".json", ".csv"):
                raise ConfigError("mining.output_path", "expected a directory (the mined rows are streamed to parquet "
                                                        f"files in it), found the file name {out!r}")
        if value.get("return_statistics"):
            raise ConfigError("mining.return_statistics", "not supported in a config: the statistics are logged "
                                                          "(verbose: true)")
        options = {k: v for k, v in value.items() if k not in MINING_EXTRA_KEYS}
        if out:
            options["output_path"] = str(Path(out).expanduser().resolve())
        return cls(model, cross, options)


@dataclass(frozen=True)
class TeacherSpec:
    """The `teacher` section: the cross-encoder whose scores become the training labels, and how
    :func:`raycross.score_with_teacher` runs it (actor pool or in-process, where the scored parquet goes)."""

    model: ModelRef
    batch_size: int = 32
    apply_activation: bool = False
    label_column: str = "scores"
    output_path: str | None = None  # default for train/tune: <training.output_dir>/teacher-scores
    execution: str = "auto"
    num_workers: int | None = None
    use_gpu: bool | None = None
    chunk_rows: int = 2048
    replace_labels: bool = False

    @classmethod
    def parse(cls, value: Any) -> TeacherSpec:
        from raycross.scoring.score import EXECUTIONS

        value = expect_mapping(value, "teacher")
        check_keys(value, TEACHER_KEYS, "teacher")
        if value.get("model") is None:
            raise ConfigError("teacher.model", "required: the cross-encoder whose scores are the labels")
        model = ModelRef.parse(value["model"], "teacher.model")
        for key in ("batch_size", "num_workers", "chunk_rows"):
            expect_positive_int(value.get(key), f"teacher.{key}")
        for key in ("apply_activation", "replace_labels"):
            if key in value:
                expect(value[key], bool, f"teacher.{key}", "true or false")
        if value.get("use_gpu") is not None:
            expect(value["use_gpu"], bool, "teacher.use_gpu", "true, false or null")
        label = value.get("label_column")
        if label is not None and label not in LABEL_COLUMNS:
            raise ConfigError("teacher.label_column", f"expected one of {'/'.join(LABEL_COLUMNS)}, found {label!r}")
        execution = value.get("execution") or "auto"
        if execution not in EXECUTIONS:
            raise ConfigError("teacher.execution", f"expected one of {'/'.join(EXECUTIONS)}, found {execution!r}")
        out = value.get("output_path")
        if out is not None:
            expect(out, str, "teacher.output_path", "a directory path")
            out = str(Path(out).expanduser().resolve())
        return cls(model, value.get("batch_size") or 32, bool(value.get("apply_activation", False)), label or "scores",
                   out, execution, value.get("num_workers"), value.get("use_gpu"), value.get("chunk_rows") or 2048,
                   bool(value.get("replace_labels", False)))


# ------------------------------------------------------------------------------------ command options
def parse_options(section: str, value: Any, valid: Iterable[str]) -> dict[str, Any]:
    """The `evaluate` / `predict` sections: known keys, an output file of a known kind, positive sizes."""
    options = dict(expect_mapping(value, section))
    check_keys(options, valid, section)
    if options.get("output_path") is not None:
        expect(options["output_path"], str, f"{section}.output_path", "a file path")
        suffixes = (".json",) if section == "evaluate" else (".parquet", ".jsonl", ".json", ".csv")
        if Path(options["output_path"]).suffix.lower() not in suffixes:
            raise ConfigError(f"{section}.output_path", f"expected a {' / '.join(suffixes)} file, found "
                                                        f"{options['output_path']!r}")
    if section == "predict":
        expect_positive_int(options.get("batch_size"), "predict.batch_size")
        expect_positive_int(options.get("num_actors"), "predict.num_actors")
        if options.get("activation_fn") is not None:
            options["activation_fn"] = resolve("object", options["activation_fn"], "predict.activation_fn")
    return options


def parse_tune(config: Mapping[str, Any], training: Any = None) -> dict[str, Any]:
    """The `tune` section as :func:`raycross.tune.tune_cross_encoder` options, checked against the rest of
    the config (search-space names and values) by the tuning package that owns their meaning.
    `training` is the already built training arguments (built once)."""
    expect_mapping(config["tune"], "tune")
    from raycross.tuning.from_config import tune_options, validate_sweep_config

    try:
        validate_sweep_config(dict(config), training)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError("tune", str(exc)) from None
    return tune_options(config["tune"])


def parse_quickstart(value: Any) -> dict[str, Any]:
    """The `quickstart` section: keyword arguments of :func:`raycross.quickstart.run_quickstart`."""
    from raycross.quickstart import run_quickstart

    return check_kwargs(value, run_quickstart, "quickstart")


# ------------------------------------------------------------------------------------------ the run
@dataclass(eq=False)
class RunSpec(Mapping):
    """A whole parsed config for one command; sections the command does not use are None.

    ``raw`` is the resolved mapping it was parsed from (what ``--dry-run`` prints and runs save); the spec
    also reads as that mapping (``spec["training"]``, ``dict(spec)``).
    """

    command: str
    raw: dict[str, Any]
    model: ModelSpec | None = None
    data: DataSpec | None = None
    loss: Component | dict[str, Component] | None = None
    evaluator: EvaluatorSpec | list[EvaluatorSpec] | None = None
    training: Any = None  # CrossEncoderTrainingArguments
    mining: MiningSpec | None = None
    teacher: TeacherSpec | None = None
    tune: dict[str, Any] | None = None
    evaluate: dict[str, Any] = field(default_factory=dict)
    predict: dict[str, Any] = field(default_factory=dict)
    quickstart: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self):
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def parse_config(config: Mapping[str, Any], command: str) -> RunSpec:
    """Parse (and so validate) every section `command` uses; raise ConfigError naming the first bad key.

    Example:
        >>> parse_config({"training": {"output_dir": "out"}}, "train")
        Traceback (most recent call last):
        ...
        raycross.config.ConfigError: config key 'model': required section for `raycross train` is missing
    """
    if command not in COMMANDS:
        raise ValueError(f"command: expected one of {list(COMMANDS)}, found {command!r}")
    config = expect_mapping(config, "")
    check_keys(config, SECTIONS, "")
    for section in REQUIRED_SECTIONS[command]:
        if config.get(section) is None:
            raise ConfigError(section, f"required section for `raycross {command}` is missing")
    used = {s for s in USED_SECTIONS[command] if config.get(s) is not None}
    spec = RunSpec(command, dict(config))
    if "model" in used:
        spec.model = ModelSpec.parse(config["model"])
    if "data" in used:
        spec.data = DataSpec.parse(config["data"], NEEDED_DATA.get(command, ()))
    if "loss" in used:
        spec.loss = parse_loss(config["loss"])
    if "evaluator" in used:
        spec.evaluator = parse_evaluator(config["evaluator"])
    if "training" in used:
        spec.training = build_training_args(config["training"])
    if "mining" in used:
        spec.mining = MiningSpec.parse(config["mining"], command)
    if "teacher" in used:
        spec.teacher = TeacherSpec.parse(config["teacher"])
        if command == "score" and spec.teacher.output_path is None:
            raise ConfigError("teacher.output_path", "required for `raycross score`: the directory of the scored "
                                                     "parquet files (or --output)")
    if "evaluate" in used:
        spec.evaluate = parse_options("evaluate", config["evaluate"], EVALUATE_KEYS)
    if "predict" in used:
        spec.predict = parse_options("predict", config["predict"], PREDICT_KEYS)
    if "tune" in used:
        spec.tune = parse_tune(config, spec.training)
    if "quickstart" in used:
        spec.quickstart = parse_quickstart(config["quickstart"])
    return spec


def validate_config(config: Mapping[str, Any], command: str) -> None:
    """Validate every section `command` uses (:func:`parse_config`, result dropped).

    Example:
        >>> validate_config({"model": {"name_or_path": "org/m"}, "evaluator": {"type": "nanobeir"}}, "evaluate")
    """
    parse_config(config, command)


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    command: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a config (file or mapping), apply ``overrides`` then ``values``, expand env vars and, with a
    `command`, validate it (see :func:`raycross.config.load.read_config` and :func:`parse_config`).

    Example:
        >>> load_config({"model": {"name_or_path": "m"}}, ["model.max_length=128"])["model"]
        {'name_or_path': 'm', 'max_length': 128}
    """
    config = read_config(source, overrides, values)
    if command is not None:
        validate_config(config, command)
    return config
