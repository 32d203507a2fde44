"""Search spaces: plain-dict specs (YAML friendly) -> Ray Tune distributions, with every name and value
checked before a trial starts.

A search-space key names what a trial changes:

- a :class:`~raycross.training.CrossEncoderTrainingArguments` field: ``learning_rate`` (or ``training.learning_rate``);
- the loss: ``loss`` (or ``loss.name``), a ``raycross.losses`` class name;
- a loss argument: ``loss.pos_weight`` (or ``loss.kwargs.pos_weight``);
- a :class:`~raycross.CrossEncoder` argument: ``model.max_length``.

A value is a distribution ``{"loguniform": [1e-5, 1e-4]}``, ``{"uniform": [lo, hi]}``,
``{"quniform": [lo, hi, q]}``, ``{"qloguniform": [lo, hi, q]}``, ``{"randint": [lo, hi]}`` (hi excluded),
``{"lograndint": [lo, hi]}``, ``{"qrandint": [lo, hi, q]}``, ``{"randn": [mean, sd]}``,
``{"choice": [...]}``, ``{"grid": [...]}`` (every value, in every sample), a Ray Tune distribution
object, or a constant.

Example:
    >>> space = SearchSpace.parse({"training.learning_rate": {"loguniform": [1e-5, 1e-4]},
    ...                            "loss.kwargs.pos_weight": {"uniform": [1, 5]}})
    >>> [p.key for p in space.params]
    ['learning_rate', 'loss.pos_weight']
    >>> space.params[0].kind, space.params[0].args
    ('loguniform', [1e-05, 0.0001])
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

# name -> number of arguments (None: a list of values)
SAMPLERS: dict[str, int | None] = {
    "uniform": 2, "loguniform": 2, "quniform": 3, "qloguniform": 3,
    "randint": 2, "lograndint": 2, "qrandint": 3, "randn": 2,
    "choice": None, "grid": None,
}
_ALIASES = {"grid_search": "grid"}

# Fields a trial cannot change: where the trial writes, and the resource shape the sweep is sized on.
FIXED_TRAINING_FIELDS = (
    "output_dir", "logging_dir", "run_name", "storage_path", "num_workers", "use_gpu", "resources_per_worker",
    "max_failures", "metric_for_best_model", "greater_is_better",
)


@dataclass
class Param:
    """One searched (or fixed) value.

    Attributes:
        key: canonical name: a training field (``learning_rate``), ``loss``, ``loss.<kwarg>`` or ``model.<kwarg>``.
        section: ``training``, ``loss``, ``loss_kwargs`` or ``model``.
        name: the field / argument name inside its section (``name`` for the loss itself).
        kind: a :data:`SAMPLERS` name, ``constant`` or ``domain`` (a Ray Tune object given as is).
        args: the sampler's arguments, the list of values (choice, grid) or the constant.
        spec: the key as the user wrote it (for error messages).
    """

    key: str
    section: str
    name: str
    kind: str
    args: Any
    spec: str

    @property
    def finite_values(self) -> list[Any] | None:
        """Every value this parameter can take when that set is finite and known, else None."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        if self.kind == "constant":
            return [self.args]
        return None

    @property
    def bounds(self) -> list[Any]:
        """Values to validate: all of a finite set, the ends of a range (randint's upper end is excluded)."""
        values = self.finite_values
        if values is not None:
            return values
        if self.kind in ("randint", "qrandint"):
            return [self.args[0], self.args[1] - 1] if self.kind == "randint" else [self.args[0], self.args[1]]
        if self.kind == "lograndint":
            return [self.args[0], self.args[1] - 1]
        if self.kind in ("uniform", "loguniform", "quniform", "qloguniform"):
            return [float(self.args[0]), float(self.args[1])]  # these sample floats, even from int bounds
        return []

    def to_tune(self, search_alg: str = "random") -> Any:
        """The Ray Tune value: a distribution, ``tune.grid_search`` or the constant."""
        from ray import tune

        kind, args = self.kind, self.args
        if kind in ("constant", "domain"):
            return args
        if kind == "grid" or (kind == "choice" and search_alg == "grid"):
            return tune.grid_search(list(args))
        if kind == "choice":
            return tune.choice(list(args))
        return getattr(tune, kind)(*args)


def canonical_key(spec: str) -> tuple[str, str, str]:
    """``(key, section, name)`` for a user key: ``training.lr`` -> ``('lr', 'training', 'lr')``.

    Example:
        >>> canonical_key("loss.kwargs.pos_weight"), canonical_key("loss.name"), canonical_key("model.max_length")
        (('loss.pos_weight', 'loss_kwargs', 'pos_weight'), ('loss', 'loss', 'name'), ('model.max_length', 'model', 'max_length'))
    """
    if not isinstance(spec, str) or not spec or any(not part for part in spec.split(".")):
        raise ValueError(f"search_space: expected keys like 'learning_rate', 'loss', 'loss.pos_weight' or "
                         f"'model.max_length', found {spec!r}")
    parts = spec.split(".")
    if parts in (["loss"], ["loss", "name"]):
        return "loss", "loss", "name"
    if parts[0] == "loss":
        rest = parts[2:] if len(parts) > 2 and parts[1] == "kwargs" else parts[1:]
        if len(rest) != 1:
            raise ValueError(f"search_space[{spec!r}]: expected 'loss.<argument>' or 'loss.kwargs.<argument>'")
        return f"loss.{rest[0]}", "loss_kwargs", rest[0]
    if parts[0] == "model":
        if len(parts) != 2:
            raise ValueError(f"search_space[{spec!r}]: expected 'model.<CrossEncoder argument>'")
        return spec, "model", parts[1]
    rest = parts[1:] if parts[0] == "training" else parts
    if len(rest) != 1:
        raise ValueError(
            f"search_space[{spec!r}]: expected a CrossEncoderTrainingArguments field such as 'learning_rate' "
            "(or 'training.learning_rate'), 'loss', 'loss.<argument>' or 'model.<argument>'"
        )
    return rest[0], "training", rest[0]


def parse_value(value: Any, where: str) -> tuple[str, Any]:
    """``(kind, args)`` of one search-space value (see the module docstring).

    Example:
        >>> parse_value({"choice": [16, 32]}, "x"), parse_value(0.1, "x")
        (('choice', [16, 32]), ('constant', 0.1))
    """
    try:
        from ray.tune.search.sample import Domain
    except ImportError:  # pragma: no cover - ray[tune] is a dependency
        Domain = ()  # type: ignore[assignment]
    if isinstance(value, Domain):
        return "domain", value
    if not isinstance(value, Mapping):
        return "constant", value
    if len(value) != 1:
        raise ValueError(f"{where}: expected one distribution like {{'loguniform': [1e-5, 1e-4]}} or "
                         f"{{'choice': [16, 32]}} (one of {sorted(SAMPLERS)}), found {dict(value)!r}")
    (kind, args), = value.items()
    kind = _ALIASES.get(str(kind), str(kind))
    if kind not in SAMPLERS:
        close = difflib.get_close_matches(kind, list(SAMPLERS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{where}: unknown distribution {kind!r}{hint} (expected one of {sorted(SAMPLERS)})")
    arity = SAMPLERS[kind]
    if not isinstance(args, (list, tuple)):
        raise ValueError(f"{where}: {kind} expects a list, found {args!r}")
    args = list(args)
    if arity is None:
        if not args:
            raise ValueError(f"{where}: {kind} needs at least one value, found []")
        return kind, args
    if len(args) != arity or not all(_is_number(a) for a in args):
        raise ValueError(f"{where}: {kind} expects {arity} numbers, found {args!r}")
    if kind != "randn" and not args[0] < args[1]:
        raise ValueError(f"{where}: {kind} expects lower < upper, found {args!r}")
    if kind in ("loguniform", "qloguniform", "lograndint") and args[0] <= 0:
        raise ValueError(f"{where}: {kind} expects a positive lower bound, found {args[0]!r}")
    if kind in ("randint", "lograndint", "qrandint") and not all(float(a).is_integer() for a in args):
        raise ValueError(f"{where}: {kind} expects integers, found {args!r}")
    if kind in ("randint", "lograndint", "qrandint"):
        args = [int(a) for a in args]
    return kind, args


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class SearchSpace:
    """A parsed search space: :class:`Param` objects in the user's order.

    Example:
        >>> space = SearchSpace.parse({"per_device_train_batch_size": {"choice": [16, 32]}})
        >>> space.to_tune()
        {'per_device_train_batch_size': <ray.tune.search.sample.Categorical object at ...>}
    """

    params: list[Param]

    @classmethod
    def parse(cls, search_space: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(search_space, Mapping):
            raise TypeError(f"search_space: expected a dict of name -> distribution, found {type(search_space).__name__}")
        if not search_space:
            raise ValueError("search_space: nothing to search: give at least one parameter, e.g. "
                             "{'learning_rate': {'loguniform': [1e-5, 1e-4]}}")
        params, seen = [], {}
        for spec, value in search_space.items():
            key, section, name = canonical_key(spec)
            if key in seen:
                raise ValueError(f"search_space: {spec!r} and {seen[key]!r} name the same parameter {key!r}")
            seen[key] = spec
            kind, args = parse_value(value, f"search_space[{spec!r}]")
            params.append(Param(key, section, name, kind, args, spec))
        return cls(params)

    def __iter__(self):
        return iter(self.params)

    def get(self, key: str) -> Param | None:
        return next((p for p in self.params if p.key == key), None)

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    @property
    def searched_keys(self) -> list[str]:
        """Keys that vary between trials (the constants excluded): the parameter columns of the table."""
        return [p.key for p in self.params if p.kind != "constant"]

    def to_tune(self, search_alg: str = "random") -> dict[str, Any]:
        """The ``param_space`` of the Tuner; ``search_alg="grid"`` turns every ``choice`` into a grid."""
        if search_alg == "grid":
            infinite = [p.spec for p in self.params if p.finite_values is None]
            if infinite:
                raise ValueError(
                    f"search_alg='grid' needs a finite set of values for every parameter; {infinite} use a "
                    "distribution: give them as {'choice': [...]} or {'grid': [...]}, or use search_alg='random'"
                )
        if search_alg == "optuna":
            grids = [p.spec for p in self.params if p.kind == "grid" or (p.kind == "domain" and _is_grid(p.args))]
            if grids:
                raise ValueError(f"search_alg='optuna' does not take grid values ({grids}): use {{'choice': [...]}}")
        return {p.key: p.to_tune(search_alg) for p in self.params}

    def grid_size(self, search_alg: str = "random") -> int:
        """Number of grid points each sample is crossed with (1 without grid parameters)."""
        size = 1
        for p in self.params:
            if p.kind == "grid" or (p.kind == "choice" and search_alg == "grid"):
                size *= len(p.args)
        return size

    # ------------------------------------------------------------------ validation
    def validate(
        self,
        base_training: Mapping[str, Any],
        loss: Any,
        model_signature: Iterable[str] | None = None,
    ) -> None:
        """Check every name (and every checkable value) before a trial starts; ValueError names the key.

        Args:
            base_training: the base training arguments (``CrossEncoderTrainingArguments.to_dict()``).
            loss: the fixed loss (a ``raycross.losses`` name or class) used when ``loss`` is not searched.
            model_signature: valid ``model.<name>`` keys (default: the CrossEncoder constructor's arguments).
        """
        from raycross.training.arguments import CrossEncoderTrainingArguments

        field_names = [f.name for f in fields(CrossEncoderTrainingArguments)]
        loss_param = self.get("loss")
        candidates = loss_param.finite_values if loss_param is not None else [loss]
        if loss_param is not None and candidates is None:
            raise ValueError(f"search_space[{loss_param.spec!r}]: the loss must be a choice/grid of loss names, "
                             f"found a {loss_param.kind} distribution")
        loss_classes = [resolve_loss(c, f"search_space[{loss_param.spec!r}]" if loss_param else "loss")
                        for c in candidates]
        if model_signature is None:
            from raycross.model import CrossEncoder

            model_signature = _signature_names(CrossEncoder, skip=("self", "model_name_or_path"))[0]
        model_signature = list(model_signature)
        for p in self.params:
            where = f"search_space[{p.spec!r}]"
            if p.section == "training":
                if p.name in FIXED_TRAINING_FIELDS:
                    raise ValueError(f"{where}: {p.name!r} cannot vary between trials (it sets where a trial writes "
                                     "or the resources the sweep is sized on); set it in the base arguments")
                if p.name not in field_names:
                    raise ValueError(f"{where}: unknown parameter {p.name!r}: not a CrossEncoderTrainingArguments "
                                     f"field{_did_you_mean(p.name, field_names)} (nor 'loss', 'loss.<argument>', "
                                     "'model.<argument>')")
                self._check_training_values(p, base_training, where)
            elif p.section == "loss_kwargs":
                if p.name == "model":
                    raise ValueError(f"{where}: the loss's model is the trial's model; it cannot be searched")
                accepted = [cls for cls in loss_classes if loss_accepts(cls, p.name)]
                if not accepted:
                    valid = sorted({a for cls in loss_classes for a in loss_arguments(cls)})
                    names = [cls.__name__ for cls in loss_classes]
                    raise ValueError(f"{where}: unknown loss argument {p.name!r}: {' / '.join(names)} "
                                     f"{'takes' if len(names) == 1 else 'take'} {valid}{_did_you_mean(p.name, valid)}")
            elif p.section == "model":
                if p.name not in model_signature:
                    raise ValueError(f"{where}: unknown CrossEncoder argument {p.name!r}"
                                     f"{_did_you_mean(p.name, model_signature)} (valid: {model_signature})")

    @staticmethod
    def _check_training_values(p: Param, base_training: Mapping[str, Any], where: str) -> None:
        from raycross.training.arguments import CrossEncoderTrainingArguments

        if p.kind == "domain" and _is_grid(p.args):
            values = list(p.args["grid_search"])
        else:
            values = p.bounds
        for value in values:
            try:
                CrossEncoderTrainingArguments(**{**base_training, p.name: value})
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: the value {value!r} is not valid for {p.name}: {exc}") from None


def _is_grid(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"grid_search"}


def _did_you_mean(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _signature_names(obj: Any, skip: Iterable[str] = ("self",)) -> tuple[list[str], bool]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = inspect.signature(target).parameters.values()
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in skip]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def resolve_loss(loss: Any, where: str = "loss") -> type:
    """A loss class from a ``raycross.losses`` name or a class (anything called as ``cls(model, **kwargs)``).

    Example:
        >>> resolve_loss("MSELoss").__name__
        'MSELoss'
    """
    if inspect.isclass(loss):
        return loss
    if not isinstance(loss, str):
        raise TypeError(f"{where}: expected a raycross.losses class name or a loss class, found {type(loss).__name__}")
    from raycross.config import ConfigError, loss_class

    try:
        return loss_class(loss, where)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def loss_arguments(cls: type) -> list[str]:
    """Keyword arguments a loss class accepts (its own, plus the torch loss its ``**kwargs`` go to).

    Example:
        >>> "pos_weight" in loss_arguments(resolve_loss("BinaryCrossEntropyLoss"))
        True
    """
    names, _ = _signature_names(cls, skip=("self", "model"))
    from raycross.config import LOSS_FORWARDED_KWARGS

    forwarded = LOSS_FORWARDED_KWARGS.get(cls.__name__)
    if forwarded is not None:
        import torch.nn

        names += [n for n in _signature_names(getattr(torch.nn, forwarded))[0] if n not in names]
    return names


def loss_accepts(cls: type, name: str) -> bool:
    """Whether ``cls(model, **{name: value})`` is a valid call by its signature.

    A loss whose ``**kwargs`` go to a known torch loss accepts that loss's arguments; any other
    ``**kwargs`` accepts every name.

    Example:
        >>> loss_accepts(resolve_loss("MSELoss"), "reduction"), loss_accepts(resolve_loss("MSELoss"), "pos_weight")
        (True, False)
    """
    from raycross.config import LOSS_FORWARDED_KWARGS

    _, var_kw = _signature_names(cls, skip=("self", "model"))
    if var_kw and cls.__name__ not in LOSS_FORWARDED_KWARGS:
        return True
    return name in loss_arguments(cls)
