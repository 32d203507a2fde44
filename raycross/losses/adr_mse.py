"""ADRMSELoss: discounted squared error between true ranks and differentiable approximate ranks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from raycross.losses._base import fullname
from raycross.losses._listwise import ListwiseLoss


class ADRMSELoss(ListwiseLoss):
    """ADR-MSE (Rank-DistiLLM): ``sum_i (r_i - approx_r_i)**2 / log2(r_i + 1)`` over all documents / #documents.

    ``approx_r_i = 1 + sum_{j != i} sigmoid(alpha (s_j - s_i))`` (ApproxRank); the true rank ``r_i`` comes
    from the labels (higher label = better rank), ties sharing their average rank. The mean runs over the
    documents of all queries together. Lists may differ in length.

    +----------------------------------------+--------------------------------+-------------------------------+
    | Inputs                                 | Labels                         | Number of Model Output Labels |
    +========================================+================================+===============================+
    | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
    +----------------------------------------+--------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        alpha: temperature inside the ApproxRank sigmoid. Defaults to 1.0.
        activation_fn: applied to the logits first. Defaults to Identity.
        mini_batch_size: (query, document) pairs per forward pass; several mini-batches use GradCache.
        gradient_cache: set False to chunk the forward pass without GradCache.
        show_progress_bar: tqdm over the mini-batches.

    Example:
        >>> loss = ADRMSELoss(model)  # doctest: +SKIP
        >>> loss([["q"], [["doc a", "doc b"]]], [[0.95, 0.1]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        alpha: float = 1.0,
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
        gradient_cache: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, gradient_cache, show_progress_bar)
        self.alpha = alpha

    def approximate_ranks(self, scores: Tensor, mask: Tensor) -> Tensor:
        """``1 + sum_{j != i, j real} sigmoid(alpha (s_j - s_i))`` for every i, shape (queries, n)."""
        others = torch.sigmoid(self.alpha * (scores[:, None, :] - scores[:, :, None])) * mask[:, None, :]
        # the j == i term is sigmoid(0) = 0.5 for every real document
        return 1.0 + others.sum(dim=2) - 0.5 * mask.float()

    def compute_loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        scores = logits.masked_fill(~mask, -1e16)
        labels = labels.masked_fill(~mask, 0.0)
        above = (labels[:, None, :] > labels[:, :, None]) & mask[:, None, :]
        tied = (labels[:, None, :] == labels[:, :, None]) & mask[:, None, :]
        true_ranks = above.sum(dim=2).float() + (tied.sum(dim=2).float() + 1.0) / 2.0
        error = (true_ranks - self.approximate_ranks(scores, mask)) ** 2 / torch.log2(true_ranks + 1.0)
        return (error * mask).sum() / mask.sum()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "activation_fn": fullname(self.activation_fn),
            "mini_batch_size": self.mini_batch_size,
        }

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{schlatt2025rankdistillm, title={Rank-DistiLLM: Closing the Effectiveness Gap Between "
            "Cross-Encoders and LLMs for Passage Re-ranking}, author={Schlatt, Ferdinand and others}, "
            "booktitle={ECIR}, year={2025}}"
        )
