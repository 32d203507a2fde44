"""Row checks before training, vectorised on Arrow columns: every text is a string (empty strings are
fine), every label a finite number (in ``[0, num_classes)`` for class labels). A failure names the dataset,
the column, the row and the value.

:class:`RowChecker` checks a whole table, or a stream batch by batch (``offset`` = rows seen before the
batch), so streamed data is checked on the fly with the same rules.

Example:
    >>> import pyarrow as pa
    >>> checker = RowChecker("train_dataset", ["q", "d"], "label")
    >>> checker.check(pa.table({"q": ["a", ""], "d": ["b", "c"], "label": [1.0, 0.0]}))
    >>> checker.check(pa.table({"q": ["a"], "d": ["b"], "label": [float("nan")]}), offset=2)
    Traceback (most recent call last):
    ...
    ValueError: train_dataset: column 'label', row 2: the label is NaN or infinite; labels must be finite numbers (value nan)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class RowChecker:
    """The row rules of one dataset.

    Args:
        where: how errors name the dataset (e.g. ``train_dataset``, ``eval_dataset['dev']``).
        input_columns: the text columns (a string per row, or a list of strings per row).
        label_column: the label column (a number, or a list of numbers, per row), if any.
        num_classes: integer class labels must lie in ``[0, num_classes)`` (None: no range rule).
    """

    where: str
    input_columns: Sequence[str]
    label_column: str | None = None
    num_classes: int | None = None

    def check(self, batch: pa.Table | pa.RecordBatch, offset: int = 0) -> None:
        """Raise a ValueError/TypeError on the first bad row of `batch` (its rows are ``offset`` onwards)."""
        for column in self.input_columns:
            self._check_texts(column, batch.column(column), offset)
        if self.label_column is not None and self.label_column in batch.column_names:
            self._check_labels(self.label_column, batch.column(self.label_column), offset)

    # ------------------------------------------------------------------ texts
    def _check_texts(self, column: str, values: Any, offset: int) -> None:
        kind = values.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            self._first_null(column, values, offset, "the row has no list of texts")
            flat, parents = _flatten(values)
            if not (_is_text(flat.type) or pa.types.is_null(flat.type)):
                self._fail(TypeError, column, _first_row(parents, 0), values,
                           f"expected lists of texts, found lists of {flat.type}", offset)
            mask = pc.is_null(flat)
            if pc.any(mask).as_py():
                index = pc.index(mask, True).as_py()
                self._fail(ValueError, column, parents[index].as_py(), values, "a text in the list is None", offset)
            return
        if pa.types.is_null(kind):
            self._fail(ValueError, column, 0, values, "the text is None", offset)
        if not _is_text(kind):
            self._fail(TypeError, column, 0, values, f"expected texts (strings), found a column of {kind}", offset)
        self._first_null(column, values, offset, "the text is None")

    # ------------------------------------------------------------------ labels
    def _check_labels(self, column: str, values: Any, offset: int) -> None:
        kind = values.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            self._first_null(column, values, offset, "the row has no list of labels")
            flat, parents = _flatten(values)
            bad = self._bad_labels(column, flat, offset, parents)
            if bad is not None:
                index, reason = bad
                self._fail(ValueError, column, parents[index].as_py(), values, reason, offset)
            return
        bad = self._bad_labels(column, values, offset, None)
        if bad is not None:
            self._fail(ValueError, column, bad[0], values, bad[1], offset)

    def _bad_labels(self, column: str, values: Any, offset: int, parents: Any) -> tuple[int, str] | None:
        kind = values.type
        if pa.types.is_null(kind) and len(values):
            return 0, "the label is None; labels must be finite numbers"
        if pa.types.is_boolean(kind) or pa.types.is_null(kind):
            return None
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            row = 0 if parents is None else parents[0].as_py()
            self._fail(TypeError, column, row, None, f"expected numeric labels, found a column of {kind}", offset)
        nulls = pc.is_null(values)
        if pc.any(nulls).as_py():
            return pc.index(nulls, True).as_py(), "the label is None; labels must be finite numbers"
        if pa.types.is_floating(kind):
            finite = pc.is_finite(values)
            if not pc.all(finite).as_py():
                index = pc.index(finite, False).as_py()
                return index, "the label is NaN or infinite; labels must be finite numbers"
        if self.num_classes is not None and pa.types.is_integer(kind) and len(values):
            outside = pc.or_(pc.less(values, 0), pc.greater_equal(values, self.num_classes))
            if pc.any(outside).as_py():
                index = pc.index(outside, True).as_py()
                return index, (f"the class label is outside [0, {self.num_classes}) "
                               f"(the model has num_labels={self.num_classes})")
        return None

    # ------------------------------------------------------------------ helpers
    def _first_null(self, column: str, values: Any, offset: int, reason: str) -> None:
        if values.null_count:
            mask = pc.is_null(values)
            self._fail(ValueError, column, pc.index(mask, True).as_py(), None, reason, offset)

    def _fail(self, error: type[Exception], column: str, row: int, values: Any, reason: str, offset: int = 0) -> None:
        """Raise `error` for row `row` of the batch (``row + offset`` of the dataset), showing its value."""
        found = ""
        if values is not None and row < len(values):
            found = f" (value {values[row].as_py()!r})"
        raise error(f"{self.where}: column {column!r}, row {row + offset}: {reason}{found}")


def _is_text(kind: Any) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _flatten(values: Any) -> tuple[Any, Any]:
    return pc.list_flatten(values), pc.list_parent_indices(values)


def _first_row(parents: Any, index: int) -> int:
    return parents[index].as_py() if len(parents) > index else 0


def check_rows(table: pa.Table, where: str, input_columns: Sequence[str], label_column: str | None,
               num_classes: int | None = None) -> None:
    """Check every row of `table` (see :class:`RowChecker`).

    Example:
        >>> import pyarrow as pa
        >>> check_rows(pa.table({"q": ["a", None], "d": ["b", "c"]}), "train_dataset", ["q", "d"], None)
        Traceback (most recent call last):
        ...
        ValueError: train_dataset: column 'q', row 1: the text is None
    """
    RowChecker(where, input_columns, label_column, num_classes).check(table)


def describe_conversion_error(data: Any, where: str, error: Exception) -> Exception:
    """A clear error for data that Arrow cannot turn into a table (mixed types in one column): names the
    column, the row and the value whose type differs from the column's first value."""
    rows: list[dict[str, Any]] | None = None
    if isinstance(data, dict) and all(isinstance(v, (list, tuple)) for v in data.values()):
        for column, values in data.items():
            bad = _first_odd(values)
            if bad is not None:
                return _mixed(where, column, bad, values)
    elif isinstance(data, (list, tuple)) and data and all(isinstance(r, dict) for r in data):
        rows = list(data)
        for column in rows[0]:
            values = [r.get(column) for r in rows]
            bad = _first_odd(values)
            if bad is not None:
                return _mixed(where, column, bad, values)
    return TypeError(f"{where}: cannot be converted to a table: {error}")


def _family(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _first_odd(values: Sequence[Any]) -> int | None:
    first = next((v for v in values if v is not None), None)
    if first is None:
        return None
    family = _family(first)
    return next((i for i, v in enumerate(values) if v is not None and _family(v) != family), None)


def _mixed(where: str, column: str, row: int, values: Sequence[Any]) -> TypeError:
    first = next(v for v in values if v is not None)
    return TypeError(f"{where}: column {column!r}, row {row}: mixed types in one column: "
                     f"{type(values[row]).__name__} {values[row]!r} where the column holds "
                     f"{type(first).__name__} values (e.g. {first!r})")
