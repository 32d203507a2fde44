"""LambdaLoss: weighted pairwise logistic loss bounding ranking metrics (NDCG), with five weighting schemes."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from raycross.losses._base import fullname
from raycross.losses._listwise import ListwiseLoss


class BaseWeightingScheme(nn.Module):
    """Weights of the document pairs in LambdaLoss.

    ``forward(gain, discount, true_sorted)`` gets, for documents ordered by the model's scores, the
    normalised gains ``(2**label - 1) / maxDCG`` (queries, n), the discounts ``log2(1 + position)`` (1, n)
    and the labels (queries, n); it returns weights broadcastable to (queries, n, n), entry [q, i, j]
    weighting the pair (i ranked at position i, j at position j).

    Example:
        >>> LambdaRankScheme()(torch.tensor([[1.0, 0.0]]), torch.log2(torch.tensor([[2.0, 3.0]])), None).shape
        torch.Size([1, 2, 2])
    """

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        raise NotImplementedError


class NoWeightingScheme(BaseWeightingScheme):
    """Every pair weighs 1 (RankNet)."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        return torch.ones((), device=gain.device)


class NDCGLoss1Scheme(BaseWeightingScheme):
    """NDCG-Loss1: pair (i, j) weighs ``gain_i / discount_i`` (and every valid pair counts, not only i > j)."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        return (gain / discount)[:, :, None]


class NDCGLoss2Scheme(BaseWeightingScheme):
    """NDCG-Loss2: ``|1/D(|i-j|) - 1/D(|i-j| + 1)| * |gain_i - gain_j|`` with ``D(p) = discount at position p``."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        n = gain.shape[1]
        inverse = 1.0 / discount[0].abs()  # inverse[p - 1] = 1 / D(p)
        positions = torch.arange(n, device=gain.device)
        delta = (positions[:, None] - positions[None, :]).abs()
        step = (inverse[(delta - 1).clamp(min=0)] - inverse[delta.clamp(max=n - 1)]).abs()
        step = torch.where(delta > 0, step, torch.zeros_like(step))
        return step[None, :, :] * (gain[:, :, None] - gain[:, None, :]).abs()


class LambdaRankScheme(BaseWeightingScheme):
    """LambdaRank: ``|1/D_i - 1/D_j| * |gain_i - gain_j|`` (a coarse NDCG bound)."""

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        inverse = 1.0 / discount
        return (inverse[:, :, None] - inverse[:, None, :]).abs() * (gain[:, :, None] - gain[:, None, :]).abs()


class NDCGLoss2PPScheme(BaseWeightingScheme):
    """NDCG-Loss2++: ``mu * NDCGLoss2 + LambdaRank`` (the strongest scheme of the LambdaLoss paper).

    Args:
        mu: weight of the NDCG-Loss2 term. Defaults to 10.0.
    """

    def __init__(self, mu: float = 10.0) -> None:
        super().__init__()
        self.mu = mu
        self.ndcg_loss2 = NDCGLoss2Scheme()
        self.lambda_rank = LambdaRankScheme()

    def forward(self, gain: Tensor, discount: Tensor, true_sorted: Tensor) -> Tensor:
        return self.mu * self.ndcg_loss2(gain, discount, true_sorted) + self.lambda_rank(gain, discount, true_sorted)


class LambdaLoss(ListwiseLoss):
    """The LambdaLoss framework: ``-sum w_ij log_b sigmoid(sigma (s_i - s_j)) / #pairs`` over document pairs.

    Documents are ordered by the model's scores; a pair (i, j) counts when ``label_i > label_j`` (for
    NDCGLoss1Scheme: every pair of real documents) and, with ``k``, when i or j is in the model's top k.
    The sum runs over the pairs of all queries and is divided by their total number (so queries with
    more pairs weigh more, as in sentence-transformers). Lists may differ in length.

    +----------------------------------------+--------------------------------+-------------------------------+
    | Inputs                                 | Labels                         | Number of Model Output Labels |
    +========================================+================================+===============================+
    | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
    +----------------------------------------+--------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        weighting_scheme: NoWeightingScheme, NDCGLoss1Scheme, NDCGLoss2Scheme, LambdaRankScheme or
            NDCGLoss2PPScheme (default). None means NoWeightingScheme.
        k: NDCG@k cut-off (None: all documents).
        sigma: score-difference scale inside the sigmoid. Defaults to 1.0.
        eps: lower bound of the ideal DCG. Defaults to 1e-10.
        reduction_log: "binary" (log2, default) or "natural".
        activation_fn: applied to the logits first. Defaults to Identity.
        mini_batch_size: (query, document) pairs per forward pass; several mini-batches use GradCache.
        gradient_cache: set False to chunk the forward pass without GradCache.
        show_progress_bar: tqdm over the mini-batches.

    Example:
        >>> loss = LambdaLoss(model, weighting_scheme=NDCGLoss2PPScheme(mu=10.0), k=10)  # doctest: +SKIP
        >>> loss([["q"], [["relevant", "irrelevant"]]], [[1, 0]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        weighting_scheme: BaseWeightingScheme | None = NDCGLoss2PPScheme(),
        k: int | None = None,
        sigma: float = 1.0,
        eps: float = 1e-10,
        reduction_log: Literal["natural", "binary"] = "binary",
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
        gradient_cache: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, gradient_cache, show_progress_bar)
        if reduction_log not in ("natural", "binary"):
            raise ValueError(f"reduction_log must be 'natural' or 'binary', found {reduction_log!r}")
        if k is not None and (not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive int or None, found {k!r}")
        self.weighting_scheme = weighting_scheme if weighting_scheme is not None else NoWeightingScheme()
        self.k = k
        self.sigma = sigma
        self.eps = eps
        self.reduction_log = reduction_log

    def compute_loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        n = logits.shape[1]
        scores = logits.masked_fill(~mask, -1e16)
        true = labels.masked_fill(~mask, float("-inf"))
        scores_sorted, order = scores.sort(dim=1, descending=True, stable=True)
        true_by_pred = true.gather(1, order)
        ideal = true.sort(dim=1, descending=True).values

        diffs = true_by_pred[:, :, None] - true_by_pred[:, None, :]
        pair_mask = torch.isfinite(diffs)
        if not isinstance(self.weighting_scheme, NDCGLoss1Scheme):
            pair_mask = pair_mask & (diffs > 0)
        k = self.k or n
        positions = torch.arange(n, device=logits.device)
        in_top_k = positions < k
        pair_mask = pair_mask & (in_top_k[:, None] | in_top_k[None, :])

        true_by_pred = true_by_pred.clamp(min=0.0)
        ideal = ideal.clamp(min=0.0)
        discount = torch.log2(2.0 + positions.float())[None, :]
        max_dcg = ((torch.exp2(ideal) - 1.0) / discount)[:, :k].sum(dim=1).clamp(min=self.eps)
        gain = (torch.exp2(true_by_pred) - 1.0) / max_dcg[:, None]
        weights = self.weighting_scheme(gain, discount, true_by_pred)

        score_diffs = (scores_sorted[:, :, None] - scores_sorted[:, None, :]).clamp(min=-1e8, max=1e8)
        score_diffs = score_diffs.nan_to_num(nan=0.0)
        pair_losses = weights * nn.functional.logsigmoid(self.sigma * score_diffs)
        if self.reduction_log == "binary":
            pair_losses = pair_losses / math.log(2)
        selected = pair_losses[pair_mask]
        return -selected.sum() / max(selected.numel(), 1)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "weighting_scheme": fullname(self.weighting_scheme),
            "k": self.k,
            "sigma": self.sigma,
            "eps": self.eps,
            "reduction_log": self.reduction_log,
            "activation_fn": fullname(self.activation_fn),
            "mini_batch_size": self.mini_batch_size,
        }

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{wang2018lambdaloss, title={The LambdaLoss Framework for Ranking Metric Optimization}, "
            "author={Wang, Xuanhui and Li, Cheng and Golbandi, Nadav and Bendersky, Michael and Najork, Marc}, "
            "booktitle={CIKM}, pages={1313--1322}, year={2018}}"
        )
