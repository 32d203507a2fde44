"""ListNetLoss: cross-entropy between the softmax of the labels and the softmax of the scores, per query."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from raycross.losses._listwise import ListwiseLoss


class ListNetLoss(ListwiseLoss):
    """ListNet (top-one probability): ``-sum_j softmax(labels)_j * log softmax(scores)_j``, mean over queries.

    Lists may differ in length; padded documents take no part.

    +----------------------------------------+--------------------------------+-------------------------------+
    | Inputs                                 | Labels                         | Number of Model Output Labels |
    +========================================+================================+===============================+
    | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
    +----------------------------------------+--------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        activation_fn: applied to the logits first. Defaults to Identity.
        mini_batch_size: (query, document) pairs per forward pass; several mini-batches use GradCache.
            ``None`` or <= 0: all pairs in one pass. Defaults to None.
        gradient_cache: set False to chunk the forward pass without GradCache.
        show_progress_bar: tqdm over the mini-batches.

    Example:
        >>> loss = ListNetLoss(model)  # doctest: +SKIP
        >>> loss([["What are pandas?"], [["Bears.", "Fish."]]], [[1, 0]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
        gradient_cache: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model, activation_fn, mini_batch_size, gradient_cache, show_progress_bar)

    def compute_loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        log_probs = torch.log_softmax(logits.masked_fill(~mask, torch.finfo(logits.dtype).min), dim=1)
        targets = torch.softmax(labels.masked_fill(~mask, float("-inf")), dim=1)
        per_query = -(targets * log_probs).masked_fill(~mask, 0.0).sum(dim=1)
        return per_query.mean()

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{cao2007learning, title={Learning to Rank: From Pairwise Approach to Listwise Approach}, "
            "author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang}, booktitle={ICML}, "
            "pages={129--136}, year={2007}}"
        )
