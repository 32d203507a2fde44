"""The one resolver: a class named in a config, by registry name or dotted path, plus its arguments.

Every kind of component a config names (a loss, an evaluator, an activation or a weighting scheme
inside a loss) is found the same way, in the spirit of torchtune's ``_component_``:

- a **registry name** of that kind (``BinaryCrossEntropyLoss``, ``reranking``), or one added with
  :func:`register` from Python before the config is read;
- a **dotted path** (``torch.nn.Sigmoid``, ``raycross.losses.MSELoss``); a config may import from
  ``torch`` and ``raycross`` only (a YAML file never imports arbitrary code).

The value is a string or ``{name: ..., kwargs: {...}}``; the keyword arguments are checked against the
class's signature, so a typo names its key with close matches.

Example:
    >>> resolve("object", "torch.nn.Identity", key="model.activation_fn").build()
    Identity()
    >>> resolve("loss", "LambdaLoss", key="loss.name").target.__name__
    'LambdaLoss'
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raycross.config.errors import ConfigError, check_kwargs, close_matches, expect, expect_mapping

ALLOWED_MODULES = ("torch", "raycross")


@dataclass(frozen=True)
class Component:
    """A resolved class and the keyword arguments it is built with (nested components are built too).

    Example:
        >>> Component(dict, {"a": 1}, "x").build(b=2)
        {'a': 1, 'b': 2}
    """

    target: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def name(self) -> str:
        return getattr(self.target, "__name__", repr(self.target))

    def build(self, *args: Any, **extra: Any) -> Any:
        kwargs = {k: v.build() if isinstance(v, Component) else v for k, v in self.kwargs.items()}
        return self.target(*args, **kwargs, **extra)


@dataclass
class Kind:
    """One kind of component: how to list its registry names and what errors call it."""

    what: str  # "loss", "evaluator", "class": used in messages
    names: Callable[[], dict[str, Any]]  # registry name -> class (imported when asked)
    aliases: dict[str, str] = field(default_factory=dict)  # lower-case alias -> registry name
    hint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # added with register()

    def registry(self) -> dict[str, Any]:
        return {**self.names(), **self.extra}


def _losses() -> dict[str, Any]:
    import raycross.losses as losses

    return {n: getattr(losses, n) for n in losses.__all__ if inspect.isclass(getattr(losses, n))
            and issubclass(getattr(losses, n), losses.CrossEncoderLoss) and not n.startswith(("CrossEncoderLoss", "Listwise"))}


def _evaluators() -> dict[str, Any]:
    import raycross.evaluation as evaluation

    return {n: getattr(evaluation, n) for n in ("CrossEncoderRerankingEvaluator", "CrossEncoderClassificationEvaluator",
                                                 "CrossEncoderCorrelationEvaluator", "CrossEncoderNanoBEIREvaluator")}


def _loss_objects() -> dict[str, Any]:
    import raycross.losses as losses

    return {n: getattr(losses, n) for n in losses.__all__ if inspect.isclass(getattr(losses, n))}


KINDS: dict[str, Kind] = {
    "loss": Kind("loss", _losses),
    "evaluator": Kind("evaluator", _evaluators, aliases={
        "reranking": "CrossEncoderRerankingEvaluator", "classification": "CrossEncoderClassificationEvaluator",
        "correlation": "CrossEncoderCorrelationEvaluator", "nanobeir": "CrossEncoderNanoBEIREvaluator"}),
    "object": Kind("class", _loss_objects, hint="(use a raycross.losses name or a dotted torch path)"),
}


def register(kind: str, name: str, target: Any) -> None:
    """Make `target` nameable as `name` in configs (e.g. a loss of your own, before ``cli.main``).

    Example:
        >>> register("loss", "MyLoss", object)  # doctest: +SKIP
    """
    _kind(kind).extra[name] = target


def names(kind: str) -> list[str]:
    """Registry names of a kind, aliases last.

    Example:
        >>> names("evaluator")[-1]
        'nanobeir'
    """
    spec = _kind(kind)
    return [*spec.registry(), *spec.aliases]


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {list(KINDS)}, found {kind!r}")
    return KINDS[kind]


def find(kind: str, name: Any, key: str) -> Any:
    """The class a registry name or dotted path names; ConfigError naming `key` (with close matches).

    Example:
        >>> find("evaluator", "reranking", "evaluator.type").__name__
        'CrossEncoderRerankingEvaluator'
    """
    spec = _kind(kind)
    expect(name, str, key, f"a {spec.what} name or a dotted path like 'torch.nn.Sigmoid'")
    if "." in name:
        module_name, _, attr = name.rpartition(".")
        if module_name.split(".")[0] not in ALLOWED_MODULES:
            raise ConfigError(key, f"only torch.* and raycross.* classes can be named in a config, found {name!r}")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            raise ConfigError(key, f"cannot import {name!r}") from None
    else:
        registry = spec.registry()
        target = registry.get(spec.aliases.get(name.lower(), name))
        if target is None:
            valid = names(kind)
            hint = spec.hint or f"(available: {', '.join(valid)})"
            raise ConfigError(key, f"unknown {spec.what} {name!r}; {close_matches(name, valid)}{hint}")
    if not inspect.isclass(target):
        raise ConfigError(key, f"{name!r} is not a class")
    return target


def split_spec(value: Any, key: str, name_key: str = "name", extra_keys: Iterable[str] = ()) -> tuple[Any, dict[str, Any], str]:
    """``"Name"`` or ``{name, kwargs}`` -> (name, kwargs, key of the name).

    Example:
        >>> split_spec({"name": "MSELoss", "kwargs": {"reduction": "sum"}}, "loss")
        ('MSELoss', {'reduction': 'sum'}, 'loss.name')
    """
    if not isinstance(value, Mapping):
        return value, {}, key
    from raycross.config.errors import check_keys

    check_keys(value, (name_key, "kwargs", *extra_keys), key)
    if name_key not in value:
        raise ConfigError(f"{key}.{name_key}", "required: the class name")
    return value[name_key], dict(expect_mapping(value.get("kwargs") or {}, f"{key}.kwargs")), f"{key}.{name_key}"


def resolve(kind: str, value: Any, key: str, kwargs: Mapping[str, Any] | None = None, *, skip: Iterable[str] = (),
            forwarded_to: Any = None, objects: Iterable[str] = ()) -> Component:
    """Resolve ``value`` (a name, a dotted path or ``{name, kwargs}``) to a checked :class:`Component`.

    Args:
        kind: ``loss``, ``evaluator`` or ``object`` (see :data:`KINDS`).
        kwargs: the arguments when given apart from the name (``{type, kwargs}`` evaluator specs).
        skip: constructor arguments the config may not set (filled by the builder).
        forwarded_to: a callable receiving the class's ``**kwargs`` (its arguments are valid keys).
        objects: keyword arguments that themselves name a class (resolved as kind ``object``).

    Example:
        >>> resolve("loss", {"name": "BinaryCrossEntropyLoss", "kwargs": {"pos_wieght": 2}}, "loss")
        Traceback (most recent call last):
        ...
        raycross.config.ConfigError: config key 'loss.kwargs.pos_wieght': unknown key; did you mean 'pos_weight'? ...
    """
    name, inline, name_key = split_spec(value, key)
    args = dict(inline if kwargs is None else expect_mapping(kwargs, f"{key}.kwargs"))
    target = find(kind, name, name_key)
    check_kwargs(args, target, f"{key}.kwargs", skip=skip, forwarded_to=forwarded_to)
    for arg in objects:
        if args.get(arg) is not None and isinstance(args[arg], (str, Mapping)):
            args[arg] = resolve("object", args[arg], f"{key}.kwargs.{arg}")
    return Component(target, args, key)
