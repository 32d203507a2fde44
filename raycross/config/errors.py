"""The error every config layer raises, and the small checks they share (keys, types, signatures).

Example:
    >>> check_keys({"learning_rat": 1}, ["learning_rate"], "training")
    Traceback (most recent call last):
    ...
    raycross.config.ConfigError: config key 'training.learning_rat': unknown key; did you mean 'learning_rate'? (valid keys: learning_rate)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A bad run config; ``key`` is the dotted path of the offending key.

    Example:
        >>> str(ConfigError("training.lr", "unknown key"))
        "config key 'training.lr': unknown key"
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"config key '{key}': {message}" if key else message)


ConfigError.__module__ = "raycross.config"  # its public home (tracebacks and messages name it so)


def close_matches(name: Any, valid: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the names of `valid` close to `name`, else ``""``.

    Example:
        >>> close_matches("limt", ["limit", "seed"])
        "did you mean 'limit'? "
    """
    matches = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(m) for m in matches)}? " if matches else ""


def check_keys(mapping: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    """Raise a ConfigError naming the first key of ``mapping`` not in ``valid``, with close matches.

    Example:
        >>> check_keys({"seed": 1}, ["seed"], "data.train")
    """
    valid = list(valid)
    for name in mapping:
        if name not in valid:
            full = f"{where}.{name}" if where else str(name)
            raise ConfigError(full, f"unknown key; {close_matches(name, valid)}(valid keys: {', '.join(valid)})")


def expect(value: Any, types: type | tuple[type, ...], key: str, what: str) -> None:
    """ConfigError unless ``isinstance(value, types)`` (a bool is not an int here).

    Example:
        >>> expect(3, int, "training.seed", "an integer")
    """
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(key, f"expected {what}, found {value!r}")
    if not isinstance(value, types):
        raise ConfigError(key, f"expected {what}, found {type(value).__name__} {value!r}")


def expect_mapping(value: Any, key: str) -> dict[str, Any]:
    """`value` when it is a mapping, else a ConfigError naming `key`.

    Example:
        >>> expect_mapping({"a": 1}, "model")
        {'a': 1}
    """
    expect(value, dict, key, "a mapping")
    return value


def expect_positive_int(value: Any, key: str, allow_none: bool = True) -> None:
    """ConfigError unless `value` is an integer >= 1 (or None when allowed).

    Example:
        >>> expect_positive_int(None, "data.train.limit")
    """
    if value is None and allow_none:
        return
    expect(value, int, key, "an integer >= 1")
    if value < 1:
        raise ConfigError(key, f"expected an integer >= 1, found {value!r}")


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


def check_kwargs(kwargs: Any, target: Any, key: str, skip: Iterable[str] = (), forwarded_to: Any = None) -> dict[str, Any]:
    """Check that every key of `kwargs` is an argument of `target` (or of `forwarded_to`, which gets its
    ``**kwargs``); returns `kwargs` as a dict.

    Example:
        >>> check_kwargs({"b": 2}, lambda a, b=1: None, "loss.kwargs", skip=["a"])
        {'b': 2}
    """
    kwargs = expect_mapping(kwargs, key)
    names, var_kw = signature_params(target, skip)
    if forwarded_to is not None:  # **kwargs passed on to another callable: its arguments are valid too
        names += signature_params(forwarded_to)[0]
        var_kw = False
    if not var_kw:
        check_keys(kwargs, names, key)
    return dict(kwargs)
