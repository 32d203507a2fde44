"""Datasets in raycross: the column contract, the one converter and the dataset spec.

- :mod:`~raycross.data.contract`: ``LABEL_COLUMNS``, :func:`split_columns`, :class:`InputExample`.
- :mod:`~raycross.data.files`: which files a path names and :func:`read_files` (one Arrow table).
- :mod:`~raycross.data.convert`: :func:`to_arrow` (in memory) and :func:`to_ray` (lazy Ray Dataset).
- :mod:`~raycross.data.spec`: :class:`DatasetSpec` (inputs, label, rows, a sample row).

Example:
    >>> from raycross.data import split_columns, to_arrow
    >>> split_columns(["query", "passage", "label"])
    (['query', 'passage'], 'label')
    >>> to_arrow([{"query": "q", "passage": "p", "label": 1}]).num_rows
    1
"""

from raycross.data.contract import LABEL_COLUMNS, InputExample, split_columns
from raycross.data.convert import (
    column_names,
    first_row,
    is_dataset_dict,
    is_ray_dataset,
    load_records,
    to_arrow,
    to_ray,
)
from raycross.data.files import DATA_SUFFIXES, data_files, file_format, is_paths, read_files, write_file
from raycross.data.spec import DatasetSpec

to_ray_dataset = to_ray  # the name the README and earlier releases use

__all__ = [
    "DATA_SUFFIXES",
    "LABEL_COLUMNS",
    "DatasetSpec",
    "InputExample",
    "column_names",
    "data_files",
    "file_format",
    "first_row",
    "is_dataset_dict",
    "is_paths",
    "is_ray_dataset",
    "load_records",
    "read_files",
    "split_columns",
    "to_arrow",
    "to_ray",
    "to_ray_dataset",
    "write_file",
]
