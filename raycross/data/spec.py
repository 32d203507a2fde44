"""What raycross knows about one dataset before using it: columns (inputs in order + label), rows, a
sample row and which input columns hold lists of texts (listwise).

Example:
    >>> import pyarrow as pa
    >>> spec = DatasetSpec.from_table("train", pa.table({"q": ["a"], "d": ["b"], "label": [1]}))
    >>> spec.input_columns, spec.label_column, spec.num_rows, spec.where
    (['q', 'd'], 'label', 1, 'train_dataset')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raycross.data.contract import split_columns


@dataclass
class DatasetSpec:
    """Columns (input order + label), size and a sample row of one dataset.

    ``name`` is ``"train"``/``"eval"`` for a single dataset, ``"train:<key>"`` for one of a dict.
    """

    name: str
    columns: list[str]
    input_columns: list[str]
    label_column: str | None
    num_rows: int
    sample_row: dict[str, Any] = field(repr=False)
    list_columns: list[str] = field(default_factory=list)
    rows_checked: bool = False  # every row checked on the driver (else the workers check their shards)

    @property
    def where(self) -> str:
        """How errors name this dataset: ``train_dataset`` or ``train_dataset['nli']``."""
        return where(self.name)

    @classmethod
    def from_table(cls, name: str, table: pa.Table) -> DatasetSpec:
        """The spec of an in-memory table."""
        return cls.build(name, list(table.column_names), table.num_rows,
                         table.slice(0, 1).to_pylist()[0] if table.num_rows else {})

    @classmethod
    def from_sample(cls, name: str, head: pa.Table, num_rows: int) -> DatasetSpec:
        """From the first rows and the row count (a dataset read lazily, e.g. streamed parquet files)."""
        return cls.build(name, list(head.column_names), num_rows, head.slice(0, 1).to_pylist()[0] if head.num_rows else {})

    @classmethod
    def from_ray(cls, name: str, dataset: Any) -> DatasetSpec:
        """The spec of a Ray Dataset (counts its rows, takes one)."""
        rows = dataset.take(1)
        return cls.build(name, list(dataset.columns()), dataset.count(), dict(rows[0]) if rows else {})

    @classmethod
    def of(cls, data: Any, name: str = "train") -> DatasetSpec:
        """The spec of any dataset :func:`raycross.data.to_arrow` accepts, from its first row, with the
        values of that row checked (texts or lists of texts; numeric labels). The row count is -1 when
        counting would read the data.

        Example:
            >>> DatasetSpec.of({"query": ["q"], "docs": [["a", "b"]], "labels": [[1, 0]]}).list_columns
            ['docs']
        """
        from raycross.data.convert import column_names, first_row

        spec = cls.build(name, column_names(data), -1, first_row(data))
        spec.check_sample()
        return spec

    @classmethod
    def build(cls, name: str, columns: list[str], num_rows: int, sample: dict[str, Any]) -> DatasetSpec:
        """Split `columns` into inputs and label; an empty dataset (``num_rows == 0``) is a ValueError."""
        if num_rows == 0:
            raise ValueError(f"{where(name)} is empty (0 rows)")
        try:
            inputs, label = split_columns(columns)
        except ValueError as err:
            raise ValueError(f"{where(name)}: {err}") from None
        list_columns = [c for c in inputs if isinstance(sample.get(c), (list, tuple, np.ndarray))]
        return cls(name, inputs + ([label] if label else []), inputs, label, num_rows, sample, list_columns)

    def check_sample(self) -> None:
        """Check the sample row: every input is a text or a list of texts, the label a number or numbers."""
        for column in self.input_columns:
            value = _plain(self.sample_row.get(column))
            if isinstance(value, str):
                continue
            if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
                raise TypeError(f"{self.where}: column {column!r}: expected a text or a list of texts, found "
                                f"{type(value).__name__} ({value!r:.60})")
        if self.label_column is None:
            return
        value = _plain(self.sample_row.get(self.label_column))
        if value is None:
            raise ValueError(f"{self.where}: label column {self.label_column!r}: found a missing value (None)")
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, (int, float)) for v in numbers):
            raise TypeError(f"{self.where}: label column {self.label_column!r}: expected a number or a list of "
                            f"numbers, found {value!r:.60}")


def where(name: str) -> str:
    """``"train"`` -> ``"train_dataset"``, ``"train:nli"`` -> ``"train_dataset['nli']"``.

    Example:
        >>> where("eval:dev")
        "eval_dataset['dev']"
    """
    kind, _, key = name.partition(":")
    return (kind if kind == "dataset" else f"{kind}_dataset") + (f"[{key!r}]" if key else "")


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, str) else value
