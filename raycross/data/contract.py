"""The column contract: which column is the label, which are inputs, and what the inputs hold.

A column named ``label``, ``labels``, ``score`` or ``scores`` is the label; every other column is an
input, in order (names do not matter). An input column holds texts, or lists of texts (listwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
