"""Data contract, dataset sources and conversion to Ray Data.

Example:
    >>> from raycross.data import split_columns
    >>> split_columns(["query", "passage", "label"])
    (['query', 'passage'], 'label')
"""

from raycross.data.contract import LABEL_COLUMNS, ColumnSpec, InputExample, split_columns
from raycross.data.sources import (
    column_names,
    first_row,
    inspect_dataset,
    is_dataset_dict,
    load_records,
    to_ray_dataset,
)

__all__ = [
    "LABEL_COLUMNS",
    "ColumnSpec",
    "InputExample",
    "column_names",
    "first_row",
    "inspect_dataset",
    "is_dataset_dict",
    "load_records",
    "split_columns",
    "to_ray_dataset",
]
