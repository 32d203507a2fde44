"""PListMLELoss: position-aware ListMLE (Plackett-Luce likelihood of the label order, weighted by rank)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from raycross.losses._base import fullname
from raycross.losses._listwise import ListwiseLoss


class PListMLELambdaWeight(nn.Module):
    """Position weights of PListMLE: ``2 ** (num_docs - rank) - 1`` for ranks 1..num_docs, 0 on padding.

    Long lists are rescaled by a common power of two so weights stay finite (relative values unchanged;
    the loss normalises them per query).

    Args:
        rank_discount_fn: optional callable mapping the (queries, max_docs) bool mask of real documents
            to weights of the same shape (zero on padding), replacing the default.

    Example:
        >>> PListMLELambdaWeight()(torch.tensor([[True, True, True], [True, False, False]])).tolist()
        [[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """

    def __init__(self, rank_discount_fn: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.rank_discount_fn = rank_discount_fn

    def forward(self, mask: Tensor) -> Tensor:
        if self.rank_discount_fn is not None:
            return self.rank_discount_fn(mask)
        n = mask.sum(dim=1, keepdim=True).float()
        ranks = torch.arange(1, mask.shape[1] + 1, device=mask.device, dtype=torch.float32)[None, :]
        # 2 ** 127 is the largest power of two below the fp32 maximum; shift the exponent of longer lists.
        shift = (n - 127).clamp(min=0)
        weights = torch.exp2(n - ranks - shift) - torch.exp2(-shift)
        return torch.where(mask, weights, torch.zeros_like(weights))


class PListMLELoss(ListwiseLoss):
    """Position-aware ListMLE: ``-sum_r w_r log P(doc at rank r is chosen among ranks >= r)``, mean over queries.

    The target order is the input order (``respect_input_order=True``: documents listed most relevant
    first) or the labels sorted in descending order (stable: ties keep their input order). ``w`` comes from
    ``lambda_weight`` normalised to sum 1 per query; ``lambda_weight=None`` gives plain ListMLE.

    +----------------------------------------+--------------------------------+-------------------------------+
    | Inputs                                 | Labels                         | Number of Model Output Labels |
    +========================================+================================+===============================+
    | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
    +----------------------------------------+--------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        lambda_weight: position weighting; defaults to :class:`PListMLELambdaWeight`. None: ListMLE.
        activation_fn: applied to the logits first. Defaults to Identity.
        mini_batch_size: (query, document) pairs per forward pass; several mini-batches use GradCache.
        respect_input_order: True: the input order is the target ranking; False: sort by labels.
        gradient_cache: set False to chunk the forward pass without GradCache.
        show_progress_bar: tqdm over the mini-batches.

    Example:
        >>> loss = PListMLELoss(model, lambda_weight=PListMLELambdaWeight())  # doctest: +SKIP
        >>> loss([["q"], [["best doc", "ok doc", "bad doc"]]], [[2, 1, 0]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        lambda_weight: PListMLELambdaWeight | None = PListMLELambdaWeight(),
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
        respect_input_order: bool = True,
        gradient_cache: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, gradient_cache, show_progress_bar)
        self.lambda_weight = lambda_weight
        self.respect_input_order = respect_input_order
        self.eps = 1e-10

    def compute_loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        if not self.respect_input_order:
            order = labels.masked_fill(~mask, float("-inf")).argsort(dim=1, descending=True, stable=True)
            logits, mask = logits.gather(1, order), mask.gather(1, order)
        scores = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        # log of the Plackett-Luce normaliser at rank r: logsumexp of the scores at ranks >= r
        log_normalizers = scores.flip(1).logcumsumexp(dim=1).flip(1)
        log_probs = scores - log_normalizers
        if self.lambda_weight is not None:
            weights = self.lambda_weight(mask).to(log_probs.dtype)
            log_probs = log_probs * (weights / (weights.sum(dim=1, keepdim=True) + self.eps))
        per_query = -log_probs.masked_fill(~mask, 0.0).sum(dim=1)
        return per_query.mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "lambda_weight": None if self.lambda_weight is None else fullname(self.lambda_weight),
            "activation_fn": fullname(self.activation_fn),
            "mini_batch_size": self.mini_batch_size,
            "respect_input_order": self.respect_input_order,
        }

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{lan2014position, title={Position-Aware ListMLE: A Sequential Learning Process for "
            "Ranking}, author={Lan, Yanyan and Zhu, Yadong and Guo, Jiafeng and Niu, Shuzi and Cheng, Xueqi}, "
            "booktitle={UAI}, pages={449--458}, year={2014}}"
        )
