"""Shared base of every raycross loss: model checks, column and label validation, pair scoring, config.

Every loss is an ``nn.Module(model, ...)`` with ``forward(inputs, labels)``. A step is two calls:
``plan(inputs)`` says which pairs the loss scores (a :class:`~raycross.losses._plan.ScorePlan`, tokenized
ahead of the step by the training pipeline), ``loss_from_plan(plan, labels)`` scores them and computes the
loss; ``forward`` accepts either the input columns or the plan. Its requirements on the dataset (number of input columns, the label) are declared as class attributes, so the same checks run
before training (:meth:`CrossEncoderLoss.validate_columns`, no forward pass) and on every batch.

Example:
    >>> loss = BinaryCrossEntropyLoss(model)  # doctest: +SKIP
    >>> loss.validate_columns(["query", "passage"], "label", {"query": "q", "passage": "p", "label": 1})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from inspect import isclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from raycross.data.contract import LABEL_COLUMNS
from raycross.losses._plan import ScorePlan

logger = logging.getLogger(__name__)



def fullname(obj: Any) -> str:
    """Dotted class path of an object, as sentence-transformers writes it in model cards.

    Example:
        >>> fullname(nn.Sigmoid())
        'torch.nn.modules.activation.Sigmoid'
    """
    cls = obj if isclass(obj) else type(obj)
    module = cls.__module__
    if module is None or module == str.__module__:
        return cls.__name__
    return f"{module}.{cls.__name__}"


def is_number(value: Any) -> bool:
    """True for a real scalar: int, float, bool, a numpy scalar or a 0-d array/tensor."""
    if isinstance(value, (Tensor, np.ndarray)):
        return value.ndim == 0 and not (isinstance(value, np.ndarray) and value.dtype.kind in "OUS")
    return isinstance(value, numbers.Real)


def is_sequence(value: Any) -> bool:
    """True for a list-like value (list, tuple, 1-d array or tensor), never for a string."""
    if isinstance(value, (Tensor, np.ndarray)):
        return value.ndim == 1
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def unpack_object_array(value: Any) -> Any:
    """A 1-d numpy object array (Ray Data's ragged list column) as a list of its rows; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value)
    return value


def describe(value: Any, limit: int = 60) -> str:
    """Short ``type: repr`` of a found value for error messages."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"


class CrossEncoderLoss(nn.Module):
    """Base class: stores the model, checks ``num_labels`` and validates columns, rows and labels.

    Subclasses declare their needs with class attributes:

    - ``min_inputs`` / ``max_inputs``: allowed number of input (non-label) columns (``None``: no maximum).
    - ``inputs_description``: the accepted input layouts, e.g. ``"(anchor, positive) pairs"``.
    - ``label_description``: what the label must hold, or ``None`` when the loss takes no label.
    - ``num_labels_description`` / :meth:`_accepts_num_labels`: the required model outputs.

    Example:
        >>> loss.validate_columns(["query", "docs"], "labels")  # doctest: +SKIP
    """

    min_inputs: int = 2
    max_inputs: int | None = 2
    inputs_description: str = "(text_a, text_b) pairs"
    label_description: str | None = "one number per pair"
    num_labels_description: str = "num_labels=1"
    #: True when forward returns a GradCache leaf whose backward hook replays the forward passes.
    uses_gradient_cache: bool = False

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not (hasattr(model, "preprocess") and hasattr(model, "num_labels") and callable(model)):
            raise TypeError(
                f"{type(self).__name__} expects a raycross CrossEncoder (with preprocess() and num_labels) "
                f"as `model`, found {type(model).__name__}"
            )
        self.model = model
        if not self._accepts_num_labels(model.num_labels):
            raise ValueError(
                f"{type(self).__name__} needs a model with {self.num_labels_description}, but the model has "
                f"num_labels={model.num_labels}. Load it with CrossEncoder(..., num_labels=...) accordingly."
            )

    # ------------------------------------------------------------------ requirements
    def _accepts_num_labels(self, num_labels: int) -> bool:
        return num_labels == 1

    @property
    def requires_label(self) -> bool:
        return self.label_description is not None

    def _expected_inputs(self) -> str:
        if self.max_inputs is None:
            count = f"at least {self.min_inputs}"
        elif self.max_inputs == self.min_inputs:
            count = f"exactly {self.min_inputs}"
        else:
            count = f"{self.min_inputs} to {self.max_inputs}"
        return f"{count} input columns, {self.inputs_description}"

    # ------------------------------------------------------------------ validation (no forward pass)
    def validate_columns(
        self,
        input_columns: list[str],
        label_column: str | None,
        sample_row: Mapping[str, Any] | None = None,
    ) -> None:
        """Check a dataset's columns (and optionally one row) against this loss, without a forward pass.

        Args:
            input_columns: the ordered non-label column names (see ``raycross.data.split_columns``).
            label_column: the label column name (label/labels/score/scores), or None when there is none.
            sample_row: optionally one row (column name -> value) to check value types and label shape.

        Raises:
            ValueError: naming the loss, the columns and what the loss needs.

        Example:
            >>> MSELoss(model).validate_columns(["a", "b"], None)  # doctest: +SKIP
            Traceback (most recent call last):
            ValueError: MSELoss needs a label column ...
        """
        name = type(self).__name__
        input_columns = list(input_columns)
        n = len(input_columns)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            raise ValueError(
                f"{name} needs {self._expected_inputs()}; the dataset has {n} input column(s) {input_columns}"
                + (f" and label column {label_column!r}" if label_column else "")
                + ". Remove or add columns (column order matters, names do not)."
            )
        if self.requires_label and label_column is None:
            raise ValueError(
                f"{name} needs a label column named one of {list(LABEL_COLUMNS)} holding "
                f"{self.label_description}; the dataset only has the input columns {input_columns}."
            )
        if not self.requires_label and label_column is not None:
            logger.warning(
                "%s takes no label, but the dataset has label column %r: it is ignored. Every row is treated "
                "as (%s); rows labelled as negatives would be trained as positives.",
                name, label_column, self.inputs_description,
            )
        if sample_row is None:
            return
        missing = [c for c in input_columns + ([label_column] if label_column else []) if c not in sample_row]
        if missing:
            raise ValueError(f"{name}: sample_row lacks the column(s) {missing}; it has {list(sample_row)}")
        self._validate_row_inputs([sample_row[c] for c in input_columns], input_columns)
        if self.requires_label:
            self._validate_row_label(sample_row[label_column], [sample_row[c] for c in input_columns], label_column)

    def _validate_row_inputs(self, values: list[Any], input_columns: list[str]) -> None:
        """Default: every input column holds one text."""
        for column, value in zip(input_columns, values):
            if not isinstance(value, str):
                raise ValueError(
                    f"{type(self).__name__}: input column {column!r} must hold one text per row "
                    f"({self.inputs_description}), found {describe(value)}"
                )

    def _validate_row_label(self, label: Any, inputs: list[Any], label_column: str) -> None:
        """Default: one number per row."""
        if not is_number(label):
            raise ValueError(
                f"{type(self).__name__}: label column {label_column!r} must hold {self.label_description}, "
                f"found {describe(label)}"
            )

    # ------------------------------------------------------------------ validation (per batch)
    def check_inputs(self, inputs: Sequence[Sequence[Any]]) -> None:
        """Raise a ValueError when a batch has the wrong number of input columns or ragged columns."""
        name = type(self).__name__
        if not isinstance(inputs, Sequence) or isinstance(inputs, str):
            raise ValueError(f"{name}: `inputs` must be a list of input columns, found {describe(inputs)}")
        n = len(inputs)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            raise ValueError(
                f"{name} needs {self._expected_inputs()}; the batch has {n} input column(s)."
            )
        sizes = [len(column) for column in inputs]
        if len(set(sizes)) > 1:
            raise ValueError(f"{name}: every input column must have one value per row, found column sizes {sizes}")
        if sizes[0] == 0:
            raise ValueError(f"{name}: the batch is empty")

    def _missing_label_error(self, labels: Any) -> ValueError:
        return ValueError(
            f"{type(self).__name__} needs labels holding {self.label_description} (a column named one of "
            f"{list(LABEL_COLUMNS)}), found {describe(labels)}"
        )

    def scalar_labels(self, labels: Any, batch_size: int) -> Tensor:
        """Labels with one number per row as a float tensor of shape (batch_size,)."""
        if labels is None:
            raise self._missing_label_error(labels)
        labels = unpack_object_array(labels)
        if not isinstance(labels, Tensor):
            try:
                labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{type(self).__name__}: labels must hold {self.label_description}, found {describe(labels)}"
                ) from err
        if labels.numel() != batch_size:
            raise ValueError(
                f"{type(self).__name__} expects {batch_size} labels (one per row: {self.label_description}), "
                f"found {labels.numel()} with shape {tuple(labels.shape)}"
            )
        return labels.reshape(-1).float()

    # ------------------------------------------------------------------ the step: plan, then score
    def plan(self, inputs: Sequence[Sequence[Any]], generator: torch.Generator | None = None) -> ScorePlan:
        """The pairs this loss scores for a batch (checked), in forward-pass chunks; see :class:`ScorePlan`.

        Args:
            inputs: the batch's input columns (one list per column, one value per row).
            generator: random source for losses that sample (in-batch negatives); None: torch's global one.

        Example:
            >>> plan = loss.plan([["q1", "q2"], ["d1", "d2"]])  # doctest: +SKIP
            >>> plan.pairs  # doctest: +SKIP
            [('q1', 'd1'), ('q2', 'd2')]
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement plan(inputs)")

    def loss_from_plan(self, plan: ScorePlan, labels: Any) -> Tensor | dict[str, Tensor]:
        """The loss of a planned batch: scores ``plan`` (tokenized ahead or now) and compares with ``labels``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement loss_from_plan(plan, labels)")

    def forward(self, inputs: Sequence[Sequence[Any]] | ScorePlan, labels: Any = None, prompt: str | None = None) -> Tensor:
        """The loss of a batch given as input columns (sentence-transformers style) or as this loss's plan;
        ``prompt`` goes before every pair it tokenizes (as sentence-transformers' ``loss(..., prompt=...)``)."""
        plan = inputs if isinstance(inputs, ScorePlan) else self.plan(inputs)
        if prompt is not None:
            plan.prompt = prompt
        return self.loss_from_plan(plan, labels)

    def score(self, plan: ScorePlan) -> Tensor:
        """Raw logits (pairs, num_labels) of the model for the plan's pairs, chunk by chunk, with gradients."""
        parts = [self.model(features) for features in plan.tokenize(self.model.preprocess).features]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def score_pairs(self, pairs: list[tuple[str, str]]) -> Tensor:
        """Raw logits (len(pairs), num_labels) of the model for (text_a, text_b) pairs, with gradients."""
        return self.score(ScorePlan.from_pairs(pairs))

    def pairwise_plan(self, inputs: Sequence[Sequence[Any]]) -> ScorePlan:
        """Plan of a (text_a, text_b) batch: the row pairs in one chunk (checked first)."""
        self.check_inputs(inputs)
        return ScorePlan.from_pairs(list(zip(inputs[0], inputs[1])), batch_size=len(inputs[0]))

    def get_config_dict(self) -> dict[str, Any]:
        """Parameters shown in the model card."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())
