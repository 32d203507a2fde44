"""Layer 1 of the config: YAML text -> a plain mapping, with ``--set`` overrides and ``${VAR}`` expansion.

Nothing here knows what a section means (that is :mod:`raycross.config.spec`).

Example:
    >>> cfg = read_config({"training": {"output_dir": "out"}}, overrides=["training.max_steps=10"])
    >>> cfg["training"]["max_steps"]
    10
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from raycross.config.errors import ConfigError


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
        elif isinstance(child, str) and part == "model" and depth == len(parts) - 2 and parts[-1] in ("name_or_path", "offline"):
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


def read_config(
    source: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A config (file, mapping or None) with ``overrides`` then ``values`` applied and env vars expanded.

    Args:
        source: a YAML file, a mapping, or None (start empty).
        overrides: ``"dotted.key=yaml value"`` strings (``--set``), applied in order.
        values: ``{dotted.key: value}`` from convenience flags, applied last (None values skipped).

    Example:
        >>> read_config({"model": "org/m"}, ["model.max_length=128"])["model"]
        {'name_or_path': 'org/m', 'max_length': 128}
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
    return expand_env(config)



def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (sources and models then use their ``offline``).

    Example:
        >>> isinstance(hub_offline(), bool)
        True
    """
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")
