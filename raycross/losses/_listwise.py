"""Shared machinery of the listwise losses: input checks, label collation, padding, chunked/GradCache scoring.

A listwise batch is ``inputs = [queries, docs_per_query]`` with ``labels`` one list of numbers per query
(lists may differ in length). Every (query, document) pair is scored once, in mini-batches of
``mini_batch_size`` pairs (with GradCache when there are several, so memory is bounded by one mini-batch),
the fp32 logits are scattered into a padded (queries, max_docs) matrix with a validity mask, and the loss
subclass computes its value from (logits, labels, mask). Padded cells never reach the loss value.

Example:
    >>> padded = pad_lists(torch.tensor([1.0, 2.0, 3.0]), [2, 1], fill=0.0)
    >>> padded.tolist()
    [[1.0, 2.0], [3.0, 0.0]]
"""

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
from raycross.losses._gradcache import plan_loss
from raycross.losses._plan import ScorePlan


def list_lengths_mask(lengths: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Boolean (len(lengths), max(lengths)) mask, True for the first ``lengths[i]`` cells of row i.

    Example:
        >>> list_lengths_mask([2, 1]).tolist()
        [[True, True], [True, False]]
    """
    lengths_t = torch.as_tensor(list(lengths), dtype=torch.long, device=device)
    width = int(lengths_t.max()) if len(lengths_t) else 0
    return torch.arange(width, device=device)[None, :] < lengths_t[:, None]


def pad_lists(flat: Tensor, lengths: Sequence[int], fill: float) -> Tensor:
    """Scatter a flat tensor of concatenated lists into a padded (len(lengths), max_len) matrix.

    Differentiable w.r.t. ``flat``; padded cells hold ``fill``.

    Example:
        >>> pad_lists(torch.tensor([5.0, 6.0, 7.0]), [1, 2], fill=-1.0).tolist()
        [[5.0, -1.0], [6.0, 7.0]]
    """
    mask = list_lengths_mask(lengths, device=flat.device)
    out = torch.full(mask.shape, fill, dtype=flat.dtype, device=flat.device)
    return out.masked_scatter(mask, flat)


def collate_list_labels(loss_name: str, labels: Any, lengths: Sequence[int]) -> Tensor:
    """Flatten listwise labels into one fp32 tensor of ``sum(lengths)`` values.

    Accepts a list (one entry per query) of lists/arrays/tensors of numbers, or a padded 2-d tensor/array
    whose row i holds the ``lengths[i]`` labels of query i first (extra cells are ignored).

    Example:
        >>> collate_list_labels("ListNetLoss", [[1, 0], [0.5]], [2, 1]).tolist()
        [1.0, 0.0, 0.5]
    """
    expected = "one list of numbers per query, as long as its list of documents"
    labels = unpack_object_array(labels)
    if labels is None:
        raise ValueError(f"{loss_name} needs labels holding {expected} (a label/labels/score/scores column)")
    if isinstance(labels, (Tensor, np.ndarray)) and labels.ndim == 2:
        matrix = torch.as_tensor(labels).float()
        if matrix.shape[0] != len(lengths) or matrix.shape[1] < max(lengths):
            raise ValueError(
                f"{loss_name}: padded labels of shape {tuple(matrix.shape)} do not fit {len(lengths)} queries "
                f"with up to {max(lengths)} documents"
            )
        return matrix[:, : max(lengths)][list_lengths_mask(lengths, device=matrix.device)]
    if isinstance(labels, (Tensor, np.ndarray)) or not is_sequence(labels):
        raise ValueError(
            f"{loss_name} needs labels holding {expected}; found {describe(labels)} "
            "(a single value per query is not enough for a listwise loss)"
        )
    if len(labels) != len(lengths):
        raise ValueError(f"{loss_name}: {len(labels)} label lists for {len(lengths)} queries")
    rows = []
    for i, (row, n) in enumerate(zip(labels, lengths)):
        if not is_sequence(row):
            raise ValueError(f"{loss_name}: labels of query {i} must be a list of numbers, found {describe(row)}")
        try:
            row_t = torch.as_tensor(np.asarray(row.cpu() if isinstance(row, Tensor) else row, dtype=np.float32))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{loss_name}: labels of query {i} must be numbers, found {describe(row)}") from err
        if row_t.numel() != n:
            raise ValueError(
                f"{loss_name}: query {i} has {n} documents but {row_t.numel()} labels; the number of documents "
                f"per query {list(lengths)} must match the number of labels per query "
                f"{[len(r) for r in labels]}"
            )
        rows.append(row_t.reshape(-1))
    return torch.cat(rows)


class ListwiseLoss(CrossEncoderLoss):
    """Base of the listwise losses: ``inputs = [queries, docs_per_query]``, one label list per query.

    Subclasses implement :meth:`compute_loss` on padded fp32 matrices.

    Args:
        model: a CrossEncoder with ``num_labels=1``.
        activation_fn: applied to the fp32 logits before the loss. Defaults to Identity.
        mini_batch_size: (query, document) pairs per forward pass. ``None`` or <= 0: all pairs at once.
            With several mini-batches and gradients enabled, GradCache keeps only one mini-batch of
            activations alive (one extra forward pass per step).
        gradient_cache: set False to only chunk the forward pass (all graphs kept, like sentence-transformers).
        show_progress_bar: tqdm over the mini-batches.

    Example:
        >>> loss = ListNetLoss(model, mini_batch_size=16)  # doctest: +SKIP
        >>> loss([["q1", "q2"], [["d1", "d2"], ["d3"]]], [[1, 0], [1]])  # doctest: +SKIP
    """

    min_inputs = 2
    max_inputs = 2
    inputs_description = "(query, [doc1, ..., docN]): a query column and a column of document lists"
    label_description = "one list of relevance scores per query, as long as its document list"

    def __init__(
        self,
        model: nn.Module,
        activation_fn: nn.Module | None = None,
        mini_batch_size: int | None = None,
        gradient_cache: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model)
        self.activation_fn = activation_fn if activation_fn is not None else nn.Identity()
        if mini_batch_size is not None and not isinstance(mini_batch_size, int):
            raise TypeError(f"mini_batch_size must be an int or None, found {describe(mini_batch_size)}")
        self.mini_batch_size = mini_batch_size
        self.gradient_cache = gradient_cache
        self.show_progress_bar = show_progress_bar

    @property
    def uses_gradient_cache(self) -> bool:
        """True when ``forward`` returns a GradCache leaf whose backward hook replays the forward passes."""
        return bool(self.gradient_cache and self.mini_batch_size and self.mini_batch_size > 0)

    # ------------------------------------------------------------------ validation
    def _validate_row_inputs(self, values: list[Any], input_columns: list[str]) -> None:
        name = type(self).__name__
        (query_col, docs_col), (query, docs) = input_columns, values
        if not isinstance(query, str):
            raise ValueError(f"{name}: column {query_col!r} must hold one query text per row, found {describe(query)}")
        if not is_sequence(docs) or not all(isinstance(d, str) for d in docs):
            raise ValueError(
                f"{name}: column {docs_col!r} must hold a list of document texts per row, found {describe(docs)}"
            )
        if len(docs) == 0:
            raise ValueError(f"{name}: column {docs_col!r} holds an empty document list")

    def _validate_row_label(self, label: Any, inputs: list[Any], label_column: str) -> None:
        name = type(self).__name__
        docs = inputs[1]
        if not is_sequence(label) or not all(is_number(v) for v in label):
            raise ValueError(
                f"{name}: label column {label_column!r} must hold {self.label_description}, found {describe(label)}"
            )
        if len(label) != len(docs):
            raise ValueError(
                f"{name}: label column {label_column!r} holds {len(label)} labels for {len(docs)} documents; "
                "they must have the same length"
            )

    def _check_listwise(self, inputs: Sequence[Any]) -> tuple[list[str], list[list[str]], list[int]]:
        self.check_inputs(inputs)
        name = type(self).__name__
        queries, docs_list = list(inputs[0]), list(inputs[1])
        if not all(is_sequence(d) for d in docs_list):
            bad = next(d for d in docs_list if not is_sequence(d))
            raise ValueError(
                f"{name}: input column 1 must hold a list of documents per query, found {describe(bad)}"
            )
        docs_list = [list(d) for d in docs_list]
        lengths = [len(d) for d in docs_list]
        if min(lengths) == 0:
            raise ValueError(f"{name}: query {lengths.index(0)} has an empty document list")
        return queries, docs_list, lengths

    # ------------------------------------------------------------------ forward
    def plan(self, inputs: Sequence[Any], generator: torch.Generator | None = None) -> ScorePlan:
        """Every (query, document) pair, query by query, in chunks of ``mini_batch_size``."""
        queries, docs_list, lengths = self._check_listwise(inputs)
        pairs = [(q, d) for q, docs in zip(queries, docs_list) for d in docs]
        return ScorePlan.from_pairs(pairs, self.mini_batch_size, lengths=lengths)

    def loss_from_plan(self, plan: ScorePlan, labels: Any = None) -> Tensor:
        """Mean loss of the batch; see the class docstring for the input layout."""
        lengths = plan.info["lengths"]
        flat_labels = collate_list_labels(type(self).__name__, labels, lengths)
        device = self.model.device

        def loss_fn(flat_logits: Tensor) -> Tensor:
            return self.loss_from_flat(flat_logits, flat_labels.to(device), lengths)

        return plan_loss(self.model, plan, loss_fn, self.gradient_cache, self.show_progress_bar)

    def loss_from_flat(self, flat_logits: Tensor, flat_labels: Tensor, lengths: Sequence[int]) -> Tensor:
        """The loss from concatenated per-query logits and labels (``lengths`` entries per query)."""
        logits = self.activation_fn(flat_logits.float())
        mask = list_lengths_mask(lengths, device=logits.device)
        return self.compute_loss(
            pad_lists(logits, lengths, 0.0), pad_lists(flat_labels.float().to(logits.device), lengths, 0.0), mask
        )

    def compute_loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """Loss from padded fp32 (queries, max_docs) logits and labels; ``mask`` marks the real documents.

        Padded cells of ``logits`` and ``labels`` hold arbitrary values and must not affect the result.
        """
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        return {"activation_fn": fullname(self.activation_fn), "mini_batch_size": self.mini_batch_size}
