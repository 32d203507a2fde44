"""RankNetLoss: pairwise logistic loss on every (more relevant, less relevant) document pair."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from raycross.losses.lambda_loss import LambdaLoss, NoWeightingScheme


class RankNetLoss(LambdaLoss):
    """RankNet: ``-mean log_b sigmoid(sigma (s_i - s_j))`` over pairs with ``label_i > label_j``.

    LambdaLoss with NoWeightingScheme. The mean runs over the pairs of all queries together.

    +----------------------------------------+--------------------------------+-------------------------------+
    | Inputs                                 | Labels                         | Number of Model Output Labels |
    +========================================+================================+===============================+
    | (query, [doc1, doc2, ..., docN])       | [score1, score2, ..., scoreN]  | 1                             |
    +----------------------------------------+--------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        k: a pair counts only if one of its documents is in the model's top k (None: all).
        sigma: score-difference scale inside the sigmoid. Defaults to 1.0.
        eps: numerical floor (unused by the unweighted loss, kept for compatibility). Defaults to 1e-10.
        reduction_log: "binary" (log2, default) or "natural".
        activation_fn: applied to the logits first. Defaults to Identity.
        mini_batch_size: (query, document) pairs per forward pass; several mini-batches use GradCache.
        gradient_cache: set False to chunk the forward pass without GradCache.
        show_progress_bar: tqdm over the mini-batches.

    Example:
        >>> loss = RankNetLoss(model)  # doctest: +SKIP
        >>> loss([["q"], [["relevant", "irrelevant"]]], [[1, 0]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        k: int | None = None,
        sigma: float = 1.0,
        eps: float = 1e-10,
        reduction_log: Literal["natural", "binary"] = "binary",
        activation_fn: nn.Module | None = nn.Identity(),
        mini_batch_size: int | None = None,
        gradient_cache: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(
            model,
            weighting_scheme=NoWeightingScheme(),
            k=k,
            sigma=sigma,
            eps=eps,
            reduction_log=reduction_log,
            activation_fn=activation_fn,
            mini_batch_size=mini_batch_size,
            gradient_cache=gradient_cache,
            show_progress_bar=show_progress_bar,
        )

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        del config["weighting_scheme"]
        return config

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{burges2005learning, title={Learning to Rank using Gradient Descent}, author={Burges, "
            "Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt and Hamilton, Nicole and "
            "Hullender, Greg}, booktitle={ICML}, pages={89--96}, year={2005}}"
        )
