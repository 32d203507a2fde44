"""Parallel wrappers of a CrossEncoder's transformer for data-parallel training: DDP, FSDP2 (``fsdp``).

A :class:`CrossEncoder` owns at most one wrapper (``model.wrap_for_training(kind)``). The wrapper holds the
parallel module that training forward passes with gradients go through; inference and no-grad passes
(evaluation, GradCache's first pass) use the bare transformer. A new kind subclasses
:class:`ParallelWrapper` and registers itself in :data:`WRAPPERS`.

Example:
    >>> model.wrap_for_training("ddp")  # doctest: +SKIP
    >>> with model.gradient_sync(False):  # doctest: +SKIP
    ...     loss(plan, labels).backward()  # accumulate locally
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from raycross.unpadded import unpadded_logits


def transformer_logits(hf_model: nn.Module, features: Mapping[str, Tensor], unpad: bool) -> Tensor:
    """Logits of the transformer for tokenized features: padding-free (:mod:`raycross.unpadded`) or plain."""
    if unpad:
        return unpadded_logits(hf_model, **features)
    return hf_model(**features, return_dict=True).logits


ScoreFn = Callable[[nn.Module, Mapping[str, Tensor]], Tensor]


class PairScores(nn.Module):
    """The module a parallel wrapper wraps: ``forward(fn, **features)`` -> ``fn(transformer, features)``.

    Every scoring function of the model (padded, padding-free, causal true/false-token scores) runs inside
    the wrapper's own ``forward``, so its hooks (DDP's gradient all-reduce) see every training pass.
    """

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf_model = hf_model

    def forward(self, fn: ScoreFn, **features: Tensor) -> Tensor:
        return fn(self.hf_model, features)


class ParallelWrapper:
    """One parallel strategy around a transformer. Subclasses set ``kind`` and build ``self.module``.

    Attributes:
        module: the parallel module training forward passes go through.
    """

    kind: str = ""

    def __init__(self, hf_model: nn.Module, **kwargs: Any) -> None:
        self.hf_model = hf_model
        self.module: nn.Module = PairScores(hf_model)

    def run(self, fn: ScoreFn, features: Mapping[str, Tensor]) -> Tensor:
        """A training forward pass (with gradients): ``fn(transformer, features)`` inside the parallel module."""
        return self.module(fn, **features)

    def gradient_sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        """A context in which backward passes sync gradients across workers (``enabled``) or only accumulate."""
        return contextlib.nullcontext()

    def train(self, mode: bool) -> None:
        self.module.train(mode)

    def unwrap(self) -> nn.Module:
        """Undo the wrapping; returns the bare transformer."""
        return self.hf_model


class DDPWrapper(ParallelWrapper):
    """``torch.nn.parallel.DistributedDataParallel``; kwargs go to its constructor (``find_unused_parameters``).

    On CUDA the model's device becomes ``device_ids``/``output_device`` (as Ray Train's ``prepare_model``).
    """

    kind = "ddp"

    def __init__(self, hf_model: nn.Module, **kwargs: Any) -> None:
        super().__init__(hf_model)
        device = next(hf_model.parameters()).device
        if device.type == "cuda":
            kwargs = {"device_ids": [device], "output_device": device, **kwargs}
        self.module = nn.parallel.DistributedDataParallel(PairScores(hf_model), **kwargs)

    def gradient_sync(self, enabled: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if enabled else self.module.no_sync()


#: kind -> wrapper class (or its dotted path, imported on first use); ``CrossEncoder.wrap_for_training(kind)``
#: looks kinds up here.
WRAPPERS: dict[str, Callable[..., ParallelWrapper] | str] = {
    "ddp": DDPWrapper,
    "fsdp": "raycross.training.fsdp.FSDPWrapper",
}


def make_wrapper(kind: str, hf_model: nn.Module, **kwargs: Any) -> ParallelWrapper:
    """Build the wrapper of `kind` around `hf_model`.

    Example:
        >>> make_wrapper("tp", nn.Linear(1, 1))
        Traceback (most recent call last):
        ValueError: kind: expected one of ['ddp', 'fsdp'], found 'tp'
    """
    if kind not in WRAPPERS:
        raise ValueError(f"kind: expected one of {sorted(WRAPPERS)}, found {kind!r}")
    factory = WRAPPERS[kind]
    if isinstance(factory, str):
        module, _, name = factory.rpartition(".")
        factory = WRAPPERS[kind] = getattr(importlib.import_module(module), name)
    return factory(hf_model, **kwargs)
