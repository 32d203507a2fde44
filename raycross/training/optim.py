"""Optimizer and learning-rate schedule, chosen by transformers itself.

``optim`` takes every transformers ``OptimizerNames`` value (``Trainer.get_optimizer_cls_and_kwargs``),
``lr_scheduler_type`` every ``SchedulerType`` (``transformers.get_scheduler``, with ``lr_scheduler_kwargs``).
Parameter groups are transformers': weight decay on all but biases and normalization weights, plus the
trainable parameters of the losses; ``learning_rate_mapping`` (sentence-transformers) moves the
parameters matching a regular expression into groups with their own learning rate.

Example:
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    >>> opt = create_optimizer(model, lr=1e-3, weight_decay=0.01)
    >>> [len(g["params"]) for g in opt.param_groups], [g["weight_decay"] for g in opt.param_groups]
    ([1, 3], [0.01, 0.0])
    >>> sched = create_scheduler(opt, "linear", warmup_steps=2, max_steps=10)
    >>> [round(lr_factor("linear", s, 2, 10), 3) for s in (0, 1, 2, 6, 10)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

_NORM_NAMES = ("LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm")


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get weight decay: all but biases and normalization-layer weights."""
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)) or any(
            n in type(module).__name__ for n in _NORM_NAMES
        )
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or "bias" in param_name:
                no_decay.add(full)
    return {name for name, _ in model.named_parameters()} - no_decay


def _hf_args(args: Any) -> types.SimpleNamespace:
    """The attributes transformers' optimizer selection reads, from raycross arguments."""
    from transformers.training_args import ParallelMode

    return types.SimpleNamespace(
        optim=str(getattr(args, "optim", "adamw_torch_fused")), optim_args=getattr(args, "optim_args", None),
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, adam_beta1=args.adam_beta1,
        adam_beta2=args.adam_beta2, adam_epsilon=args.adam_epsilon,
        optim_target_modules=getattr(args, "optim_target_modules", None),
        gradient_accumulation_steps=args.gradient_accumulation_steps, warmup_steps=args.warmup_steps,
        parallel_mode=ParallelMode.NOT_DISTRIBUTED,
    )


def _named_groups(
    named: list[tuple[str, nn.Parameter]], decay: set[str], weight_decay: float,
    learning_rate_mapping: dict[str, float] | None,
) -> list[dict[str, Any]]:
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    for pattern, lr in (learning_rate_mapping or {}).items():
        matching = {n: p for n, p in named if re.search(pattern, n)}
        if not matching:
            raise ValueError(
                f"learning_rate_mapping: no parameters found matching the pattern {pattern!r} in the model "
                f"(parameter names look like {[n for n, _ in named[:3]]})"
            )
        taken = {id(p) for p in matching.values()}
        for group in groups:
            group["params"] = [p for p in group["params"] if id(p) not in taken]
        with_decay = [p for n, p in matching.items() if n in decay]
        without = [p for n, p in matching.items() if n not in decay]
        groups += [g for g in ({"params": with_decay, "lr": lr, "weight_decay": weight_decay},
                               {"params": without, "lr": lr, "weight_decay": 0.0}) if g["params"]]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module,
    args: Any,
    extra_parameters: Iterable[tuple[str, nn.Parameter]] = (),
    optimizer_cls_and_kwargs: tuple[type, dict[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer of a run: ``args.optim`` through transformers (or ``optimizer_cls_and_kwargs``), on
    the model's and the losses' trainable parameters (``extra_parameters``: (name, parameter) pairs).

    Example:
        >>> args = types.SimpleNamespace(optim="sgd", learning_rate=0.1, weight_decay=0.0, adam_beta1=0.9,
        ...     adam_beta2=0.999, adam_epsilon=1e-8, gradient_accumulation_steps=1, warmup_steps=0,
        ...     learning_rate_mapping={})
        >>> type(build_optimizer(torch.nn.Linear(2, 1), args)).__name__
        'SGD'
    """
    from transformers import Trainer

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    named += [(f"loss.{n}", p) for n, p in extra_parameters if p.requires_grad]
    decay = decay_parameter_names(model) | {n for n, _ in named if n.startswith("loss.") and "bias" not in n}
    groups = _named_groups(named, decay, args.weight_decay, getattr(args, "learning_rate_mapping", None))
    if optimizer_cls_and_kwargs is not None:
        optimizer_cls, kwargs = optimizer_cls_and_kwargs
        kwargs = dict(kwargs)
    else:
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(_hf_args(args), model)
    for key in ("params", "model", "optimizer_dict"):  # some optimizers (GaLore, LOMO, layer-wise) own the groups
        if key in kwargs:
            groups = kwargs.pop(key)
    try:
        return optimizer_cls(groups, **kwargs)
    except (RuntimeError, ValueError) as exc:
        if not kwargs.pop("fused", False):
            raise
        del exc  # fused kernels not available for this device/dtype: the same optimizer without them
        return optimizer_cls(groups, **kwargs)


def create_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    extra_parameters: Iterable[nn.Parameter] = (),
    optim: str = "adamw_torch_fused",
) -> torch.optim.Optimizer:
    """Shorthand of :func:`build_optimizer` with plain values (AdamW, fused where supported, by default)."""
    args = types.SimpleNamespace(optim=optim, learning_rate=lr, weight_decay=weight_decay, adam_beta1=betas[0],
                                 adam_beta2=betas[1], adam_epsilon=eps, gradient_accumulation_steps=1,
                                 warmup_steps=0, learning_rate_mapping={})
    extra = [(f"extra_{i}", p) for i, p in enumerate(extra_parameters)]
    return build_optimizer(model, args, extra)


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: Any,
    warmup_steps: int,
    max_steps: int,
    scheduler_kwargs: dict[str, Any] | None = None,
) -> Any:
    """``transformers.get_scheduler(kind, ...)``: every transformers schedule (its state_dict saves the step).

    ``reduce_lr_on_plateau`` steps on evaluation metrics, not on optimizer steps (the loop knows).
    """
    from transformers import get_scheduler

    name = str(getattr(kind, "value", kind))
    return get_scheduler(name, optimizer=optimizer, num_warmup_steps=warmup_steps, num_training_steps=max_steps,
                         scheduler_specific_kwargs=dict(scheduler_kwargs or {}))


def lr_factor(kind: Any, step: int, warmup_steps: int, max_steps: int,
              scheduler_kwargs: dict[str, Any] | None = None) -> float:
    """Multiplier of the base learning rate at `step` under transformers' schedule `kind`."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = create_scheduler(optimizer, kind, warmup_steps, max_steps, scheduler_kwargs)
    return float(scheduler.lr_lambdas[0](step))
