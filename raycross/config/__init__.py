"""Run configs (YAML) for the ``raycross`` CLI, ``jobs/`` and ``raycross tune``, in three layers:

1. :mod:`~raycross.config.load`: YAML text -> a plain mapping (``--set`` overrides, ``${VAR}`` expansion);
2. :mod:`~raycross.config.spec`: mapping -> typed :class:`RunSpec` (parsing is validation; errors name
   the key with close matches). Beside it: :mod:`~raycross.config.sources` (data sources),
   :mod:`~raycross.config.models` (model references), :mod:`~raycross.config.components` (the one
   resolver of class names: registry name or dotted path);
3. :mod:`~raycross.config.build` / :mod:`~raycross.config.prepare`: spec -> model, loss, evaluator and
   the training data (load, mine, teacher scores).

Example:
    >>> from raycross.config import load_config, parse_config
    >>> cfg = load_config({"training": {"output_dir": "out"}}, overrides=["training.max_steps=10"])
    >>> cfg["training"]["max_steps"]
    10
"""

from raycross.config.components import Component, register, resolve
from raycross.config.errors import ConfigError, check_keys, signature_params
from raycross.config.load import (
    expand_env,
    get_dotted,
    hub_offline,
    load_yaml,
    parse_override,
    parse_yaml,
    read_config,
    set_dotted,
)
from raycross.config.models import MODEL_REF_KEYS, ModelRef, looks_local, resolve_model_ref, validate_model_ref
from raycross.config.sources import (
    SOURCE_KINDS,
    SourceSpec,
    is_single_source,
    load_source,
    resolve_source,
    validate_source,
)
from raycross.config.spec import (
    COMMANDS,
    LOSS_FORWARDED_KWARGS,
    LOSS_OBJECT_ARGS,
    RunSpec,
    build_training_args,
    load_config,
    loss_class,
    parse_config,
    resolve_object_name,
    training_fields,
    validate_config,
)

__all__ = [
    "COMMANDS",
    "LOSS_FORWARDED_KWARGS",
    "LOSS_OBJECT_ARGS",
    "MODEL_REF_KEYS",
    "SOURCE_KINDS",
    "Component",
    "ConfigError",
    "ModelRef",
    "RunSpec",
    "SourceSpec",
    "build_training_args",
    "check_keys",
    "expand_env",
    "get_dotted",
    "hub_offline",
    "is_single_source",
    "load_config",
    "load_source",
    "load_yaml",
    "looks_local",
    "loss_class",
    "parse_config",
    "parse_override",
    "parse_yaml",
    "read_config",
    "register",
    "resolve",
    "resolve_model_ref",
    "resolve_object_name",
    "resolve_source",
    "set_dotted",
    "signature_params",
    "training_fields",
    "validate_config",
    "validate_model_ref",
    "validate_source",
]
