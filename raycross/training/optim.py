"""Optimizer (AdamW, no weight decay on biases and normalization weights) and learning-rate schedules.

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

import math
from collections.abc import Iterable

import torch
from torch import nn

from raycross.training.arguments import SchedulerType

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


def create_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    extra_parameters: Iterable[nn.Parameter] = (),
) -> torch.optim.Optimizer:
    """AdamW with two parameter groups (decay / no decay); fused kernels when the device supports them."""
    decay = decay_parameter_names(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay] + [p for p in extra_parameters if p.requires_grad],
         "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):  # fused kernels not available for this device/dtype
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lr_factor(kind: SchedulerType | str, step: int, warmup_steps: int, max_steps: int) -> float:
    """Multiplier of the base learning rate at `step` (linear warmup, then the schedule's decay)."""
    kind = SchedulerType.parse(kind, "lr_scheduler_type")
    if kind is SchedulerType.CONSTANT:
        return 1.0
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if kind is SchedulerType.CONSTANT_WITH_WARMUP:
        return 1.0
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    if kind is SchedulerType.LINEAR:
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))  # cosine, half a period


def create_scheduler(
    optimizer: torch.optim.Optimizer, kind: SchedulerType | str, warmup_steps: int, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`lr_factor` (its state_dict saves and restores the step)."""
    kind = SchedulerType.parse(kind, "lr_scheduler_type")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Factor(kind, warmup_steps, max_steps))


class _Factor:
    """A picklable ``step -> factor`` function."""

    def __init__(self, kind: SchedulerType, warmup_steps: int, max_steps: int) -> None:
        self.kind, self.warmup_steps, self.max_steps = kind, warmup_steps, max_steps

    def __call__(self, step: int) -> float:
        return lr_factor(self.kind, step, self.warmup_steps, self.max_steps)
