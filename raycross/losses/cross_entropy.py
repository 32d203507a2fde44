"""CrossEntropyLoss: softmax cross-entropy over the model's ``num_labels`` logits (pair classification)."""

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


class CrossEntropyLoss(CrossEncoderLoss):
    """Cross-entropy between the ``num_labels`` logits of each pair and its class (e.g. NLI).

    +-----------------------------+--------------------------------------------+-------------------------------+
    | Inputs                      | Labels                                     | Number of Model Output Labels |
    +=============================+============================================+===============================+
    | (input_A, input_B) pairs    | class index in [0, num_labels)             | ``num_classes`` (>= 2)        |
    +-----------------------------+--------------------------------------------+-------------------------------+
    | (input_A, input_B) pairs    | class probabilities (num_labels numbers)   | ``num_classes`` (>= 2)        |
    +-----------------------------+--------------------------------------------+-------------------------------+

    Args:
        model: a CrossEncoder with ``num_labels >= 2``.
        activation_fn: applied to the logits first. Defaults to Identity.
        **kwargs: passed to :class:`torch.nn.CrossEntropyLoss` (e.g. ``weight``, ``label_smoothing``).

    Example:
        >>> loss = CrossEntropyLoss(CrossEncoder(path, num_labels=3))  # doctest: +SKIP
        >>> loss([["A man eats.", "A dog runs."], ["A person eats.", "A cat sleeps."]], torch.tensor([0, 2]))  # doctest: +SKIP
    """

    inputs_description = "(text_a, text_b) pairs"
    label_description = "one class index in [0, num_labels) per pair (or num_labels class probabilities)"
    num_labels_description = "num_labels >= 2 (one logit per class)"

    def __init__(self, model: nn.Module, activation_fn: nn.Module = nn.Identity(), **kwargs: Any) -> None:
        super().__init__(model)
        self.activation_fn = activation_fn
        self.ce_loss = nn.CrossEntropyLoss(**kwargs)

    def _accepts_num_labels(self, num_labels: int) -> bool:
        return num_labels >= 2

    def _validate_row_label(self, label: Any, inputs: list[Any], label_column: str) -> None:
        name, num_labels = type(self).__name__, self.model.num_labels
        if is_sequence(label):
            if len(label) != num_labels or not all(is_number(v) for v in label):
                raise ValueError(
                    f"{name}: label column {label_column!r} holds class probabilities of length {len(label)}; "
                    f"the model has num_labels={num_labels}. Expected {self.label_description}."
                )
            return
        if not is_number(label) or float(label) != int(label) or not 0 <= int(label) < num_labels:
            raise ValueError(
                f"{name}: label column {label_column!r} must hold {self.label_description} with "
                f"num_labels={num_labels}, found {describe(label)}"
            )

    def _targets(self, labels: Any, batch_size: int, device: torch.device) -> Tensor:
        name, num_labels = type(self).__name__, self.model.num_labels
        if labels is None:
            raise self._missing_label_error(labels)
        labels = unpack_object_array(labels)
        if isinstance(labels, (list, tuple)) and labels and isinstance(labels[0], (Tensor, np.ndarray)):
            labels = torch.stack([torch.as_tensor(x) for x in labels])
        elif not isinstance(labels, Tensor):
            labels = torch.as_tensor(np.asarray(labels))
        if labels.dim() == 2 and labels.shape == (batch_size, 1):
            labels = labels.view(-1)
        if labels.dim() == 2 and labels.shape == (batch_size, num_labels):
            return labels.float().to(device)  # class probabilities
        if labels.shape != (batch_size,):
            raise ValueError(
                f"{name} expects {batch_size} labels holding {self.label_description}, found shape "
                f"{tuple(labels.shape)} (num_labels={num_labels})"
            )
        if labels.is_floating_point():
            if not torch.equal(labels, labels.round()):
                raise ValueError(f"{name}: class labels must be whole numbers, found {labels.tolist()}")
            labels = labels.long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
            raise ValueError(
                f"{name}: class labels must lie in [0, {num_labels}) for a model with num_labels={num_labels}, "
                f"found {sorted(set(labels.tolist()))}"
            )
        return labels.to(device)

    def plan(self, inputs: Sequence[Sequence[str]], generator: torch.Generator | None = None) -> ScorePlan:
        """The row pairs, in one forward pass."""
        return self.pairwise_plan(inputs)

    def loss_from_plan(self, plan: ScorePlan, labels: Any) -> Tensor:
        """Mean cross-entropy over the batch."""
        logits = self.activation_fn(self.score(plan).float())
        return self.ce_loss(logits, self._targets(labels, plan.info["batch_size"], logits.device))

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": fullname(self.activation_fn)}
