"""BinaryCrossEntropyLoss: sigmoid cross-entropy between one logit per pair and a 0/1 (or [0, 1]) label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from raycross.losses._base import CrossEncoderLoss, fullname
from raycross.losses._plan import ScorePlan


class BinaryCrossEntropyLoss(CrossEncoderLoss):
    """Binary cross-entropy on the model's single logit per (text_a, text_b) pair.

    +-------------------------------------+----------------------------------------+-------------------------------+
    | Inputs                              | Labels                                 | Number of Model Output Labels |
    +=====================================+========================================+===============================+
    | (anchor, positive/negative) pairs   | 1 if positive, 0 if negative           | 1                             |
    +-------------------------------------+----------------------------------------+-------------------------------+
    | (input_A, input_B) pairs            | float similarity score between 0 and 1 | 1                             |
    +-------------------------------------+----------------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        activation_fn: applied to the logits before ``BCEWithLogits``. Defaults to Identity.
        pos_weight: weight of the positive class, e.g. ``torch.tensor(4)`` (a number is accepted too).
        **kwargs: passed to :class:`torch.nn.BCEWithLogitsLoss` (e.g. ``reduction``).

    Example:
        >>> loss = BinaryCrossEntropyLoss(model)  # doctest: +SKIP
        >>> loss([["What are pandas?", "What are pandas?"], ["A bear.", "A fish."]], torch.tensor([1, 0]))  # doctest: +SKIP
    """

    inputs_description = "(text_a, text_b) pairs"
    label_description = "one number per pair: 1/0 or a score in [0, 1]"

    def __init__(
        self,
        model: nn.Module,
        activation_fn: nn.Module = nn.Identity(),
        pos_weight: Tensor | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model)
        self.activation_fn = activation_fn
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            pos_weight = torch.tensor(float(pos_weight))
        self.pos_weight = pos_weight
        self.bce_kwargs = kwargs
        nn.BCEWithLogitsLoss(**kwargs)  # fail early on unknown keyword arguments

    def plan(self, inputs: Sequence[Sequence[str]], generator: torch.Generator | None = None) -> ScorePlan:
        """The row pairs, in one forward pass."""
        return self.pairwise_plan(inputs)

    def loss_from_plan(self, plan: ScorePlan, labels: Any) -> Tensor:
        """Mean BCE over the batch (or as ``reduction`` says)."""
        logits = self.score(plan).float().view(-1)
        targets = self.scalar_labels(labels, plan.info["batch_size"]).to(logits.device)
        logits = self.activation_fn(logits)
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.device, torch.float32)
        return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, **self.bce_kwargs)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "activation_fn": fullname(self.activation_fn),
            "pos_weight": None if self.pos_weight is None else self.pos_weight.item(),
        }
