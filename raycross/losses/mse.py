"""MSELoss: mean squared error between one logit per pair and a target score (e.g. a teacher's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from raycross.losses._base import CrossEncoderLoss, fullname
from raycross.losses._plan import ScorePlan


class MSELoss(CrossEncoderLoss):
    """MSE between the (activated) logit of each pair and its target score; used for distillation.

    +-----------------------------+------------------+-------------------------------+
    | Inputs                      | Labels           | Number of Model Output Labels |
    +=============================+==================+===============================+
    | (input_A, input_B) pairs    | similarity score | 1                             |
    +-----------------------------+------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        activation_fn: applied to the logits first (e.g. Sigmoid for teacher scores in [0, 1]). Defaults to Identity.
        **kwargs: passed to :class:`torch.nn.MSELoss`.

    Example:
        >>> loss = MSELoss(student)  # doctest: +SKIP
        >>> loss([["q1", "q2"], ["d1", "d2"]], torch.tensor([7.5, -3.0]))  # doctest: +SKIP
    """

    inputs_description = "(text_a, text_b) pairs"
    label_description = "one target score per pair"

    def __init__(self, model: nn.Module, activation_fn: nn.Module = nn.Identity(), **kwargs: Any) -> None:
        super().__init__(model)
        self.activation_fn = activation_fn
        self.loss_fct = nn.MSELoss(**kwargs)

    def plan(self, inputs: Sequence[Sequence[str]], generator: torch.Generator | None = None) -> ScorePlan:
        """The row pairs, in one forward pass."""
        return self.pairwise_plan(inputs)

    def loss_from_plan(self, plan: ScorePlan, labels: Any) -> Tensor:
        """Mean squared error over the batch."""
        logits = self.activation_fn(self.score(plan).float().view(-1))
        targets = self.scalar_labels(labels, plan.info["batch_size"]).to(logits.device)
        return self.loss_fct(logits, targets.detach())

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": fullname(self.activation_fn)}
