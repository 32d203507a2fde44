"""Score (text_a, text_b) pairs in mini-batches, plainly or with GradCache (https://arxiv.org/abs/2101.06983).

GradCache bounds activation memory to one mini-batch of pairs, whatever the batch size:

1. score every mini-batch without a graph, snapshotting the RNG state before each forward pass;
2. compute the loss on the detached logits and back-propagate it to the logits only (the cache);
3. when the trainer calls ``loss.backward()``, a hook re-runs each mini-batch with a graph under the same
   RNG state (same dropout masks) and autocast settings, and back-propagates ``logits . cached_grad``.

The model gradient equals the one of an ordinary forward pass over the same mini-batches. Used by
CachedMultipleNegativesRankingLoss and by every listwise loss (see ``_listwise.py``).

The chunks and their features come from the loss's :class:`~raycross.losses._plan.ScorePlan`, tokenized
ahead of the step by the training pipeline (or here, when the loss is called with raw texts).

Example:
    >>> loss = cached_loss(model, pairs, mini_batch_size=16, loss_fn=lambda logits: logits.mean())  # doctest: +SKIP
    >>> loss.backward()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from raycross.losses._plan import ScorePlan

Pairs = list[tuple[str, str]]


class RandContext:
    """Snapshot of the CPU and CUDA RNG states; entering it replays them, leaving restores the outer state.

    Example:
        >>> state = RandContext(torch.device("cpu"))
        >>> a = torch.rand(2)
        >>> with state:
        ...     b = torch.rand(2)
        >>> bool(torch.equal(a, b))
        True
    """

    def __init__(self, device: torch.device) -> None:
        self.cpu_state = torch.get_rng_state()
        self.cuda_devices: list[int] = []
        self.cuda_states: list[Tensor] = []
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.cuda_devices = [index]
            self.cuda_states = [torch.cuda.get_rng_state(index)]
        self._fork: Any = None

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=self.cuda_devices, enabled=True)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        for index, state in zip(self.cuda_devices, self.cuda_states):
            torch.cuda.set_rng_state(state, index)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)
        self._fork = None


def _flat_logits(model: nn.Module, features: Mapping[str, Tensor]) -> Tensor:
    logits = model(features)
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits.view(-1)
    return logits


def plan_features(model: nn.Module, plan: ScorePlan) -> list[Mapping[str, Tensor]]:
    """The plan's features per chunk, tokenized now with ``model.preprocess`` when nobody did it ahead."""
    return plan.tokenize(model.preprocess).features


def score_plan(model: nn.Module, plan: ScorePlan, show_progress_bar: bool = False) -> Tensor:
    """Logits of the plan's pairs (shape (n,) for one label, else (n, num_labels)), chunk by chunk, with graph.

    Chunking alone does not bound memory (every chunk's graph is kept); see :func:`cached_plan_loss`.

    Example:
        >>> score_plan(model, ScorePlan.from_pairs([("q", "d1"), ("q", "d2")])).shape  # doctest: +SKIP
        torch.Size([2])
    """
    features = plan_features(model, plan)
    chunks = tqdm(features, desc="Score mini-batches", disable=not show_progress_bar or len(features) == 1)
    parts = [_flat_logits(model, feats) for feats in chunks]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def score_pairs(
    model: nn.Module, pairs: Pairs, mini_batch_size: int | None = None, show_progress_bar: bool = False
) -> Tensor:
    """:func:`score_plan` of ``pairs`` in chunks of ``mini_batch_size``, tokenized now.

    Example:
        >>> score_pairs(model, [("q", "d1"), ("q", "d2")]).shape  # doctest: +SKIP
        torch.Size([2])
    """
    return score_plan(model, ScorePlan.from_pairs(pairs, mini_batch_size), show_progress_bar)


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def fp32_loss(logits: Tensor, loss_fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``loss_fn(logits.float())`` with autocast off, so the loss math runs in fp32 under bf16/fp16 training."""
    with torch.autocast(logits.device.type, enabled=False):
        return loss_fn(logits.float())


def _replay_context(model: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """Under a parallel wrapper, only the last replayed mini-batch syncs gradients (an outer skip still wins)."""
    gradient_sync = getattr(model, "gradient_sync", None)
    return gradient_sync(last) if callable(gradient_sync) else contextlib.nullcontext()


def cached_plan_loss(
    model: nn.Module,
    plan: ScorePlan,
    loss_fn: Callable[[Tensor], Tensor],
    show_progress_bar: bool = False,
) -> Tensor:
    """``loss_fn(logits of the plan's pairs)`` with GradCache: activations of one chunk live at a time.

    Args:
        model: a CrossEncoder (``preprocess`` + ``forward`` -> logits).
        plan: the pairs to score, one chunk per forward pass (tokenized now unless done ahead).
        loss_fn: maps the fp32 logits (n,) (or (n, num_labels)) to a scalar loss.
        show_progress_bar: tqdm over the chunks.

    Returns:
        A scalar leaf tensor. With gradients enabled, its ``backward()`` replays the chunks and
        accumulates the model gradients (scaled by the incoming gradient, e.g. 1 / accumulation steps).

    Example:
        >>> plan = ScorePlan.from_pairs(pairs, mini_batch_size=8)  # doctest: +SKIP
        >>> loss = cached_plan_loss(model, plan, lambda z: nn.functional.softplus(-z).mean())  # doctest: +SKIP
    """
    grad_enabled = torch.is_grad_enabled()
    device = torch.device(getattr(model, "device", "cpu"))
    autocast_enabled, autocast_dtype = _autocast_state(device.type)

    features = plan_features(model, plan)
    states: list[RandContext | None] = []
    parts: list[Tensor] = []
    # Step 1: score every chunk without a graph.
    for feats in tqdm(features, desc="Score mini-batches", disable=not show_progress_bar):
        states.append(RandContext(device) if grad_enabled else None)
        with torch.no_grad():
            parts.append(_flat_logits(model, feats).float())
    logits = torch.cat(parts, dim=0)
    if not grad_enabled:
        return fp32_loss(logits, loss_fn)

    # Step 2: the loss and its gradient w.r.t. the logits.
    logits.requires_grad_(True)
    with torch.enable_grad():
        loss = fp32_loss(logits, loss_fn)
        (logit_grad,) = torch.autograd.grad(loss, logits, allow_unused=True)
    if logit_grad is None:
        logit_grad = torch.zeros_like(logits)
    grad_chunks = [logit_grad[b:e] for b, e in plan.ranges]
    loss = loss.detach().requires_grad_(True)

    # Step 3: replay each chunk with a graph when the trainer back-propagates the loss.
    def replay(grad_output: Tensor) -> None:
        with torch.enable_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_enabled):
            for i, (feats, state, grad) in enumerate(zip(features, states, grad_chunks)):
                with _replay_context(model, last=i == len(features) - 1), state:
                    chunk_logits = _flat_logits(model, feats).float()
                    surrogate = torch.sum(chunk_logits * grad.to(chunk_logits.device)) * grad_output
                    surrogate.backward()

    loss.register_hook(replay)
    return loss


def plan_loss(
    model: nn.Module,
    plan: ScorePlan,
    loss_fn: Callable[[Tensor], Tensor],
    gradient_cache: bool = True,
    show_progress_bar: bool = False,
) -> Tensor:
    """GradCache when it saves memory (several chunks, gradients on), else one ordinary pass over the chunks.

    Example:
        >>> plan_loss(model, ScorePlan.from_pairs(pairs), lambda z: z.mean())  # doctest: +SKIP
    """
    if gradient_cache and len(plan.chunks) > 1 and torch.is_grad_enabled():
        return cached_plan_loss(model, plan, loss_fn, show_progress_bar)
    return fp32_loss(score_plan(model, plan, show_progress_bar), loss_fn)


def cached_loss(
    model: nn.Module,
    pairs: Pairs,
    mini_batch_size: int,
    loss_fn: Callable[[Tensor], Tensor],
    show_progress_bar: bool = False,
) -> Tensor:
    """:func:`cached_plan_loss` of ``pairs`` in chunks of ``mini_batch_size``, tokenized now.

    Example:
        >>> loss = cached_loss(model, pairs, 8, lambda z: nn.functional.softplus(-z).mean())  # doctest: +SKIP
    """
    return cached_plan_loss(model, ScorePlan.from_pairs(pairs, mini_batch_size), loss_fn, show_progress_bar)
