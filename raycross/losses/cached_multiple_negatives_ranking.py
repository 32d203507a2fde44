"""CachedMultipleNegativesRankingLoss: MultipleNegativesRankingLoss with GradCache (bounded memory)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from raycross.losses._gradcache import cached_plan_loss
from raycross.losses._plan import ScorePlan
from raycross.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss


class CachedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss with GradCache: large batches at the memory of ``mini_batch_size`` pairs.

    (1) score all pairs in mini-batches without a graph, saving each mini-batch's RNG state;
    (2) compute the loss and its gradient w.r.t. the logits; (3) on ``backward()``, re-score each
    mini-batch with a graph under the saved RNG state (same dropout) and back-propagate the cached
    gradient. Same loss and gradients as MultipleNegativesRankingLoss, one extra forward pass.

    +-------------------------------------------------+--------+-------------------------------+
    | Inputs                                          | Labels | Number of Model Output Labels |
    +=================================================+========+===============================+
    | (anchor, positive) pairs                        | none   | 1                             |
    +-------------------------------------------------+--------+-------------------------------+
    | (anchor, positive, negative) triplets           | none   | 1                             |
    +-------------------------------------------------+--------+-------------------------------+
    | (anchor, positive, negative_1, ..., negative_n) | none   | 1                             |
    +-------------------------------------------------+--------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        num_negatives: in-batch negatives per anchor. Defaults to 4. ``None``: all of them.
        scale: multiplies the activated logits. Defaults to 10.0.
        activation_fn: applied to the logits first. Defaults to Sigmoid.
        mini_batch_size: (anchor, candidate) pairs per forward pass. Defaults to 32.
        show_progress_bar: tqdm over the mini-batches.
        gather_across_devices: in-batch negatives from every training worker (see the parent class).

    Example:
        >>> loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=32)  # doctest: +SKIP
        >>> loss(batch_columns).backward()  # doctest: +SKIP
    """

    #: The returned loss is a leaf whose backward hook replays the forward passes (see ``_gradcache``).
    uses_gradient_cache = True

    def __init__(
        self,
        model: nn.Module,
        num_negatives: int | None = 4,
        scale: float = 10.0,
        activation_fn: nn.Module | None = nn.Sigmoid(),
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__(model, num_negatives, scale, activation_fn, gather_across_devices)
        if not isinstance(mini_batch_size, int) or mini_batch_size <= 0:
            raise ValueError(f"mini_batch_size must be a positive int, found {mini_batch_size!r}")
        self.mini_batch_size = mini_batch_size
        self.show_progress_bar = show_progress_bar

    def plan(self, inputs: Sequence[Sequence[str]], generator: torch.Generator | None = None) -> ScorePlan:
        """The pairs of :meth:`build_pairs`, in chunks of ``mini_batch_size`` (one forward pass each)."""
        self.check_inputs(inputs)
        pairs, batch_size = self.build_pairs(inputs, generator)
        return ScorePlan.from_pairs(pairs, self.mini_batch_size, batch_size=batch_size)

    def loss_from_plan(self, plan: ScorePlan, labels: Any = None) -> Tensor:
        """Mean loss over the rows; gradients flow when the caller back-propagates it."""
        batch_size = plan.info["batch_size"]
        return cached_plan_loss(self.model, plan, lambda logits: self.calculate_loss(logits, batch_size),
                                self.show_progress_bar)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size}
