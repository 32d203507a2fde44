"""ListMLELoss: Plackett-Luce likelihood of the target order, without position weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from raycross.losses.plist_mle import PListMLELoss


class ListMLELoss(PListMLELoss):
    """ListMLE: ``-sum_r log P(doc at rank r is chosen among ranks >= r)``, mean over queries.

    PListMLELoss with ``lambda_weight=None``. The target order is the input order
    (``respect_input_order=True``) or the labels sorted descending (stable).

    +----------------------------------------+--------------------------------+-------------------------------+
    | Inputs                                 | Labels                         | Number of Model Output Labels |
    +========================================+================================+===============================+
    | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
    +----------------------------------------+--------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        activation_fn: applied to the logits first. Defaults to Identity.
        mini_batch_size: (query, document) pairs per forward pass; several mini-batches use GradCache.
        respect_input_order: True: the input order is the target ranking; False: sort by labels.
        gradient_cache: set False to chunk the forward pass without GradCache.
        show_progress_bar: tqdm over the mini-batches.

    Example:
        >>> loss = ListMLELoss(model, respect_input_order=False)  # doctest: +SKIP
        >>> loss([["q"], [["bad doc", "best doc"]]], [[0, 1]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
        respect_input_order: bool = True,
        gradient_cache: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(
            model,
            lambda_weight=None,
            activation_fn=activation_fn,
            mini_batch_size=mini_batch_size,
            respect_input_order=respect_input_order,
            gradient_cache=gradient_cache,
            show_progress_bar=show_progress_bar,
        )

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        del config["lambda_weight"]
        return config

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{xia2008listwise, title={Listwise Approach to Learning to Rank - Theory and Algorithm}, "
            "author={Xia, Fen and Liu, Tie-Yan and Wang, Jue and Zhang, Wensheng and Li, Hang}, booktitle={ICML}, "
            "pages={1192--1199}, year={2008}}"
        )
