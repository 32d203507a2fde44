"""The column contract: which column is the label, which are inputs, and what the inputs hold.

A column named ``label``, ``labels``, ``score`` or ``scores`` is the label; every other column is an
input, in order (names do not matter). An input column holds texts, or lists of texts (listwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "score", "scores")


def split_columns(column_names: Sequence[str]) -> tuple[list[str], str | None]:
    """Split column names into ordered input columns and the label column (or None).

    Example:
        >>> split_columns(["query", "passage", "label"])
        (['query', 'passage'], 'label')
    """
    names = list(column_names)
    labels = [c for c in names if c in LABEL_COLUMNS]
    if len(labels) > 1:
        raise ValueError(
            f"dataset has several label columns {labels}; keep exactly one of {list(LABEL_COLUMNS)}"
        )
    if not [c for c in names if c not in LABEL_COLUMNS]:
        raise ValueError(f"dataset has no input columns: found only {names}")
    label = labels[0] if labels else None
    return [c for c in names if c != label], label


@dataclass
class ColumnSpec:
    """What a dataset holds: ordered input columns, the label column, and which inputs are lists of texts.

    Example:
        >>> ColumnSpec.from_row({"query": "q", "docs": ["a", "b"], "labels": [1, 0]}).list_columns
        ['docs']
    """

    input_columns: list[str]
    label_column: str | None
    list_columns: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], column_names: Sequence[str] | None = None) -> ColumnSpec:
        inputs, label = split_columns(list(column_names or row.keys()))
        list_columns = []
        for col in inputs:
            value = row[col]
            if isinstance(value, str):
                continue
            if _is_list_of_texts(value):
                list_columns.append(col)
            else:
                raise TypeError(
                    f"column {col!r}: expected a text or a list of texts, found {type(value).__name__} ({value!r:.60})"
                )
        if label is not None:
            _check_label(label, row[label])
        return cls(inputs, label, list_columns)


def _is_list_of_texts(value: Any) -> bool:
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _check_label(column: str, value: Any) -> None:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if value is None:
        raise ValueError(f"label column {column!r}: found a missing value (None)")
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, (int, float)) for v in value):
            raise TypeError(f"label column {column!r}: expected numbers, found {value!r:.60}")
    elif not isinstance(value, (int, float)):
        raise TypeError(f"label column {column!r}: expected a number or a list of numbers, found {type(value).__name__}")


@dataclass
class InputExample:
    """A legacy training example: the texts of one row and its label.

    Example:
        >>> InputExample(texts=["what is ray?", "Ray is a compute engine."], label=1.0)
        InputExample(texts=['what is ray?', 'Ray is a compute engine.'], label=1.0, guid='')
    """

    texts: list[str]
    label: int | float = 0
    guid: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.texts, (list, tuple)) or not all(isinstance(t, str) for t in self.texts):
            raise TypeError(f"InputExample.texts: expected a list of strings, found {self.texts!r:.80}")
        self.texts = list(self.texts)
