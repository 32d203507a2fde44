"""MultipleNegativesRankingLoss: pick each anchor's positive among in-batch candidates and hard negatives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from raycross.losses._base import CrossEncoderLoss, fullname
from raycross.losses._distributed import distributed_world, gather_columns
from raycross.losses._gradcache import fp32_loss, score_plan
from raycross.losses._plan import ScorePlan


class MultipleNegativesRankingLoss(CrossEncoderLoss):
    """InfoNCE for cross-encoders: each anchor must score its positive above its candidates.

    For row i the candidates are its positive, ``num_negatives`` in-batch negatives (positives and hard
    negatives of the *other* rows, drawn at random; all of them when ``num_negatives`` is None or
    exceeds their number) and the row's own hard negatives. The loss is the cross-entropy of
    ``scale * activation_fn(logits)`` with the positive as the target class, averaged over rows.

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
        gather_across_devices: draw in-batch negatives from the texts of every training worker
            (torch.distributed all-gather of the candidate texts). Each worker scores its own rows against
            the gathered candidates, so gradients are exact. Every worker must call forward each step.

    Example:
        >>> loss = MultipleNegativesRankingLoss(model)  # doctest: +SKIP
        >>> loss([["What are pandas?", "Capital of France?"], ["Bears.", "Paris."]])  # doctest: +SKIP
    """

    min_inputs = 2
    max_inputs = None
    inputs_description = (
        "(anchor, positive) pairs, (anchor, positive, negative) triplets or (anchor, positive, negative_1, ..., "
        "negative_n) tuples"
    )
    label_description = None

    def __init__(
        self,
        model: nn.Module,
        num_negatives: int | None = 4,
        scale: float = 10.0,
        activation_fn: nn.Module | None = nn.Sigmoid(),
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__(model)
        if num_negatives is not None and (not isinstance(num_negatives, int) or num_negatives < 0):
            raise ValueError(f"num_negatives must be a non-negative int or None, found {num_negatives!r}")
        self.num_negatives = num_negatives
        self.scale = scale
        self.activation_fn = activation_fn
        self.gather_across_devices = gather_across_devices
        self.cross_entropy_loss = nn.CrossEntropyLoss()

    def in_batch_negative_indices(
        self, batch_size: int, num_columns: int, total_rows: int, offset: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Indices (batch_size, n) into the column-major flattened candidates (index = column * total_rows + row).

        Row i (global row ``offset + i``) never gets a candidate of its own row. Sampled negatives are drawn
        from `generator` (torch's global random source when None).
        """
        num_candidates = num_columns * total_rows
        own = (torch.arange(num_columns)[:, None] * total_rows + offset + torch.arange(batch_size)[None, :]).T
        mask = torch.ones(batch_size, num_candidates, dtype=torch.bool)
        mask.scatter_(1, own, False)
        available = num_candidates - num_columns
        if self.num_negatives == 0 or available == 0:
            return torch.empty(batch_size, 0, dtype=torch.long)
        if self.num_negatives is not None and self.num_negatives < available:
            return torch.multinomial(mask.float(), self.num_negatives, generator=generator)
        return torch.arange(num_candidates).expand(batch_size, -1)[mask].view(batch_size, available)

    @property
    def plans_collectively(self) -> bool:
        """True when planning a batch gathers the candidates of every worker (a torch.distributed collective):
        the training pipeline then plans it in the training thread, in step order on every worker."""
        return self.gather_across_devices and distributed_world()[1] > 1

    def build_pairs(
        self, inputs: Sequence[Sequence[str]], generator: torch.Generator | None = None
    ) -> tuple[list[tuple[str, str]], int]:
        """All (anchor, candidate) pairs, slot by slot: positives, in-batch negatives, hard negatives.

        Returns the pairs and the batch size; pair ``slot * batch_size + i`` belongs to row i.
        """
        anchors = list(inputs[0])
        columns = [list(column) for column in inputs[1:]]
        batch_size = len(anchors)
        if self.gather_across_devices:
            candidates, offset = gather_columns(columns, type(self).__name__)
        else:
            candidates, offset = columns, 0
        total_rows = len(candidates[0])
        flat = [text for column in candidates for text in column]
        negatives = self.in_batch_negative_indices(batch_size, len(columns), total_rows, offset, generator)

        pairs = list(zip(anchors, columns[0]))
        for slot in negatives.T.tolist():
            pairs.extend(zip(anchors, (flat[j] for j in slot)))
        for column in columns[1:]:
            pairs.extend(zip(anchors, column))
        return pairs, batch_size

    def calculate_loss(self, logits: Tensor, batch_size: int) -> Tensor:
        """Loss from the flat logits of :meth:`build_pairs` (slot-major)."""
        scores = logits.float().view(-1, batch_size).T  # (batch, 1 + in-batch negatives + hard negatives)
        if self.activation_fn is not None:
            scores = self.activation_fn(scores)
        if self.scale:
            scores = scores * self.scale
        target = torch.zeros(batch_size, dtype=torch.long, device=scores.device)
        return self.cross_entropy_loss(scores, target)

    def plan(self, inputs: Sequence[Sequence[str]], generator: torch.Generator | None = None) -> ScorePlan:
        """The pairs of :meth:`build_pairs` (gathered candidates included), in one forward pass."""
        self.check_inputs(inputs)
        pairs, batch_size = self.build_pairs(inputs, generator)
        return ScorePlan.from_pairs(pairs, batch_size=batch_size)

    def loss_from_plan(self, plan: ScorePlan, labels: Any = None) -> Tensor:
        """Mean loss over the (local) rows; ``labels`` is ignored."""
        batch_size = plan.info["batch_size"]
        return fp32_loss(score_plan(self.model, plan), lambda logits: self.calculate_loss(logits, batch_size))

    def get_config_dict(self) -> dict[str, Any]:
        config = {
            "scale": self.scale,
            "num_negatives": self.num_negatives,
            "activation_fn": None if self.activation_fn is None else fullname(self.activation_fn),
        }
        if self.gather_across_devices:
            config["gather_across_devices"] = True
        return config
