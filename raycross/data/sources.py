"""Turning what users pass as a dataset into a Ray Dataset (streamed from files) or into records.

Accepted: HF ``Dataset``, ``DatasetDict`` / dict of datasets (one entry per dataset), Ray ``Dataset``,
a list of dicts, a dict of column lists, and parquet/json/jsonl/csv file paths (or lists of them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raycross.data.contract import ColumnSpec

_FILE_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _file_format(paths: Sequence[str]) -> str:
    formats = set()
    for p in paths:
        suffix = Path(p).suffix.lower()
        if suffix not in _FILE_SUFFIXES:
            raise ValueError(f"dataset path {p!r}: expected a .parquet, .json, .jsonl or .csv file, found {suffix or 'no suffix'!r}")
        if not Path(p).exists():
            raise FileNotFoundError(f"dataset path {p!r} does not exist")
        formats.add(_FILE_SUFFIXES[suffix])
    if len(formats) != 1:
        raise ValueError(f"dataset paths mix formats {sorted(formats)}; pass files of one format")
    return formats.pop()


def _as_paths(data: Any) -> list[str] | None:
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in _FILE_SUFFIXES)
            if not files:
                raise ValueError(f"dataset directory {str(path)!r} holds no .parquet/.json/.jsonl/.csv files")
            return files
        return [str(path)]
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
        return [str(d) for d in data]
    return None


def is_dataset_dict(data: Any) -> bool:
    """True for a ``DatasetDict`` or a dict mapping names to datasets (multi-dataset training)."""
    if not isinstance(data, Mapping) or not data:
        return False
    return not all(isinstance(v, (list, tuple)) for v in data.values()) or type(data).__name__ == "DatasetDict"


def to_ray_dataset(data: Any):
    """Convert one dataset to a ``ray.data.Dataset``; files are read lazily by Ray, not by the driver.

    Example:
        >>> ds = to_ray_dataset([{"query": "q", "passage": "p", "label": 1}])  # doctest: +SKIP
        >>> ds = to_ray_dataset("train.parquet")  # doctest: +SKIP
    """
    import ray.data

    if isinstance(data, ray.data.Dataset):
        return data
    paths = _as_paths(data)
    if paths is not None:
        fmt = _file_format(paths)
        reader = {"parquet": ray.data.read_parquet, "json": ray.data.read_json, "csv": ray.data.read_csv}[fmt]
        kwargs = {"lines": True} if fmt == "json" and all(p.endswith(".jsonl") for p in paths) else {}
        return reader(paths, **kwargs)
    if type(data).__name__ in ("Dataset", "IterableDataset") and hasattr(data, "column_names"):
        return ray.data.from_huggingface(data)
    if isinstance(data, Mapping):
        if is_dataset_dict(data):
            raise TypeError("to_ray_dataset converts one dataset; convert each entry of a dict of datasets")
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"dict of columns has columns of different lengths: {lengths}")
        keys = list(data)
        data = [dict(zip(keys, values)) for values in zip(*data.values())]
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("dataset is empty: found a list with no rows")
        if not all(isinstance(r, Mapping) for r in data):
            raise TypeError("dataset list: expected a list of dicts (one per row)")
        return ray.data.from_items([dict(r) for r in data])
    raise TypeError(
        "dataset: expected a datasets.Dataset, DatasetDict, ray.data.Dataset, list of dicts, dict of columns, "
        f"or parquet/json/jsonl/csv path(s); found {type(data).__name__}"
    )


def column_names(data: Any) -> list[str]:
    """Column names of any accepted dataset, without reading it whole.

    Example:
        >>> column_names([{"query": "q", "passage": "p", "label": 1}])
        ['query', 'passage', 'label']
    """
    if hasattr(data, "column_names") and not callable(data.column_names):
        return list(data.column_names)
    if type(data).__name__ == "Dataset" and hasattr(data, "columns"):  # ray.data.Dataset
        return list(data.columns())
    paths = _as_paths(data)
    if paths is not None:
        fmt = _file_format(paths)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(paths[0]).names)
        return list(first_row(data).keys())
    if isinstance(data, Mapping) and not is_dataset_dict(data):
        return list(data)
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping):
        return list(data[0])
    raise TypeError(f"cannot read column names from a {type(data).__name__}")


def first_row(data: Any) -> dict[str, Any]:
    """The first row of any accepted dataset (reads only what it needs).

    Example:
        >>> first_row({"query": ["q1", "q2"], "label": [1, 0]})
        {'query': 'q1', 'label': 1}
    """
    if isinstance(data, Mapping) and not is_dataset_dict(data):
        if not data or not len(next(iter(data.values()))):
            raise ValueError("dataset is empty")
        return {k: v[0] for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping):
        return dict(data[0])
    if type(data).__name__ == "Dataset" and hasattr(data, "column_names") and hasattr(data, "__getitem__"):
        if len(data) == 0:
            raise ValueError("dataset is empty: 0 rows")
        return dict(data[0])
    paths = _as_paths(data)
    if paths is not None:
        fmt = _file_format(paths)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(paths[0])
            batch = next(pf.iter_batches(batch_size=1), None)
            if batch is None or batch.num_rows == 0:
                raise ValueError(f"dataset file {paths[0]!r} is empty")
            return batch.to_pylist()[0]
        if fmt == "json":
            import json

            with open(paths[0], encoding="utf8") as f:
                head = f.read(1)
                f.seek(0)
                if head == "[":
                    return dict(json.load(f)[0])
                for line in f:
                    if line.strip():
                        return json.loads(line)
            raise ValueError(f"dataset file {paths[0]!r} is empty")
        import csv

        with open(paths[0], encoding="utf8", newline="") as f:
            row = next(csv.DictReader(f), None)
        if row is None:
            raise ValueError(f"dataset file {paths[0]!r} is empty")
        return {k: _csv_value(v) for k, v in row.items()}
    rows = data.take(1)  # ray.data.Dataset
    if not rows:
        raise ValueError("dataset is empty: 0 rows")
    return dict(rows[0])


def _csv_value(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def inspect_dataset(data: Any) -> ColumnSpec:
    """Validate the column contract on the first row and return the dataset's ColumnSpec.

    Example:
        >>> inspect_dataset({"query": ["q"], "passage": ["p"], "label": [1]}).input_columns
        ['query', 'passage']
    """
    return ColumnSpec.from_row(first_row(data), column_names(data))


def load_records(data: Any) -> list[dict[str, Any]]:
    """Materialize a (small) dataset as a list of row dicts; for tests, evaluation sets and local mode.

    Example:
        >>> load_records({"query": ["q"], "label": [1]})
        [{'query': 'q', 'label': 1}]
    """
    if isinstance(data, Mapping) and not is_dataset_dict(data):
        keys = list(data)
        return [dict(zip(keys, values)) for values in zip(*data.values())]
    if isinstance(data, (list, tuple)) and (not data or isinstance(data[0], Mapping)):
        return [dict(r) for r in data]
    if type(data).__name__ == "Dataset" and hasattr(data, "to_list"):
        return data.to_list()
    paths = _as_paths(data)
    if paths is not None and _file_format(paths) == "parquet":
        import pyarrow.parquet as pq

        return [row for p in paths for row in pq.read_table(p).to_pylist()]
    return to_ray_dataset(data).take_all()
