"""MarginMSELoss: MSE between predicted margins score(q, pos) - score(q, neg_i) and gold margins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from raycross.losses._base import (
    CrossEncoderLoss,
    describe,
    fullname,
    is_number,
    is_sequence,
    unpack_object_array,
)
from raycross.losses._plan import ScorePlan


class MarginMSELoss(CrossEncoderLoss):
    """MSE between the predicted margins ``s(q, d_1) - s(q, d_i)`` and the gold margins (distillation).

    Labels are either the margins themselves or the raw (teacher) scores of every document, in which case
    the margins are computed here. Both documents may be relevant; only the margin is learned.

    +-----------------------------------------------+-------------------------------------------------------------+-------------------------------+
    | Inputs                                        | Labels                                                      | Number of Model Output Labels |
    +===============================================+=============================================================+===============================+
    | (query, document_one, document_two) triplets  | gold_sim(query, doc_one) - gold_sim(query, doc_two)         | 1                             |
    +-----------------------------------------------+-------------------------------------------------------------+-------------------------------+
    | (query, document_one, document_two) triplets  | [gold_sim(query, doc_one), gold_sim(query, doc_two)]        | 1                             |
    +-----------------------------------------------+-------------------------------------------------------------+-------------------------------+
    | (query, positive, negative_1, ..., negative_n)| [gold_sim(q, pos) - gold_sim(q, neg_i) for i in 1..n]       | 1                             |
    +-----------------------------------------------+-------------------------------------------------------------+-------------------------------+
    | (query, positive, negative_1, ..., negative_n)| [gold_sim(q, pos), gold_sim(q, neg_1), ..., gold_sim(q, n)] | 1                             |
    +-----------------------------------------------+-------------------------------------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        activation_fn: applied to the logits first. Defaults to Identity.
        **kwargs: passed to :class:`torch.nn.MSELoss`.

    Example:
        >>> loss = MarginMSELoss(student)  # doctest: +SKIP
        >>> loss([["q"], ["pos"], ["neg"]], torch.tensor([4.2]))  # doctest: +SKIP
    """

    min_inputs = 3
    max_inputs = None
    inputs_description = (
        "(query, document_one, document_two) triplets or (query, positive, negative_1, ..., negative_n)"
    )
    label_description = (
        "the gold margins [s(q, d1) - s(q, d_i) for the n other documents] (a single number for triplets) "
        "or the n + 1 gold scores [s(q, d1), ..., s(q, d_n+1)]"
    )

    def __init__(self, model: nn.Module, activation_fn: nn.Module = nn.Identity(), **kwargs: Any) -> None:
        super().__init__(model)
        self.activation_fn = activation_fn
        self.loss_fct = nn.MSELoss(**kwargs)

    def _validate_row_label(self, label: Any, inputs: list[Any], label_column: str) -> None:
        num_negatives = len(inputs) - 2
        ok = (is_number(label) and num_negatives == 1) or (
            is_sequence(label) and len(label) in (num_negatives, num_negatives + 1) and all(is_number(v) for v in label)
        )
        if not ok:
            raise ValueError(
                f"{type(self).__name__}: with {len(inputs)} input columns ({num_negatives} other document(s)), "
                f"label column {label_column!r} must hold {num_negatives} margin(s) or {num_negatives + 1} scores; "
                f"found {describe(label)}"
            )

    def margin_labels(self, labels: Any, batch_size: int, num_negatives: int) -> Tensor:
        """Gold margins of shape (batch_size, num_negatives) from margins or raw scores."""
        if labels is None:
            raise self._missing_label_error(labels)
        labels = unpack_object_array(labels)
        if isinstance(labels, (list, tuple)) and labels and isinstance(labels[0], (Tensor, np.ndarray)):
            labels = torch.stack([torch.as_tensor(x).reshape(-1) for x in labels])
        elif not isinstance(labels, Tensor):
            try:
                labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{type(self).__name__}: malformed labels {describe(labels)}") from err
        labels = labels.float()
        if labels.shape == (batch_size, num_negatives + 1):
            labels = labels[:, :1] - labels[:, 1:]
        elif labels.shape == (batch_size,):
            labels = labels.unsqueeze(1)
        if labels.shape != (batch_size, num_negatives):
            raise ValueError(
                f"{type(self).__name__}: labels of shape {tuple(labels.shape)} do not match {batch_size} rows with "
                f"{num_negatives} other document(s); expected {self.label_description}: shape "
                f"({batch_size}, {num_negatives}) or ({batch_size}, {num_negatives + 1})"
            )
        return labels

    def plan(self, inputs: Sequence[Sequence[str]], generator: torch.Generator | None = None) -> ScorePlan:
        """(query, document) pairs column by column, in one forward pass."""
        self.check_inputs(inputs)
        queries = list(inputs[0])
        pairs = [(q, d) for column in inputs[1:] for q, d in zip(queries, column)]
        return ScorePlan.from_pairs(pairs, batch_size=len(queries), num_docs=len(inputs) - 1)

    def loss_from_plan(self, plan: ScorePlan, labels: Any) -> Tensor:
        """Mean squared margin error over rows and documents."""
        batch_size, num_docs = plan.info["batch_size"], plan.info["num_docs"]
        targets = self.margin_labels(labels, batch_size, num_docs - 1)
        scores = self.activation_fn(self.score(plan).float().view(num_docs, batch_size).T)
        margins = scores[:, :1] - scores[:, 1:]
        return self.loss_fct(margins, targets.to(margins.device).detach())

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": fullname(self.activation_fn)}
