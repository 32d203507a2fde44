"""The one converter: anything a user passes as a dataset -> an Arrow table (:func:`to_arrow`, in memory)
or a Ray Dataset (:func:`to_ray`, lazy: files are read by Ray tasks, not by the driver).

Accepted everywhere (training, mining, configs, evaluators): ``datasets.Dataset`` (select/shuffle
indices honoured) and ``IterableDataset``, ``ray.data.Dataset``, ``pyarrow.Table``, pandas
``DataFrame``, a list of row dicts, a dict of column lists, and data files (see
:mod:`raycross.data.files`). A ``DatasetDict`` or a dict of datasets is several datasets: convert each.

Example:
    >>> to_arrow({"query": ["q1", "q2"], "label": [1, 0]}).to_pylist()
    [{'query': 'q1', 'label': 1}, {'query': 'q2', 'label': 0}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from raycross.data.files import data_files, file_format, is_json_array, is_paths, read_file, read_files, select_columns

ACCEPTED = ("a datasets.Dataset, ray.data.Dataset, pyarrow Table, pandas DataFrame, list of dicts, dict of columns "
            "or parquet/json/jsonl/csv path(s)")


def is_dataset_dict(data: Any) -> bool:
    """True for a ``DatasetDict`` or a dict mapping names to datasets (multi-dataset training).

    Example:
        >>> is_dataset_dict({"query": ["q"], "label": [1]}), is_dataset_dict({"a": [{"q": "x"}], "b": "b.parquet"})
        (False, True)
    """
    if not isinstance(data, Mapping) or not data:
        return False
    return type(data).__name__ in ("DatasetDict", "IterableDatasetDict") or not all(
        isinstance(v, (list, tuple)) for v in data.values()
    )


def is_ray_dataset(data: Any) -> bool:
    """True for a ``ray.data.Dataset`` (checked without importing Ray).

    Example:
        >>> is_ray_dataset([{"q": "a"}])
        False
    """
    return type(data).__name__ in ("Dataset", "MaterializedDataset") and hasattr(data, "to_arrow_refs")


def _is_hf(data: Any) -> bool:
    return type(data).__module__.startswith("datasets") and hasattr(data, "column_names")


def _is_pandas(data: Any) -> bool:
    return type(data).__module__.startswith("pandas") and hasattr(data, "to_dict")


def _one_dataset(data: Any) -> None:
    if is_dataset_dict(data):
        names = list(data)
        raise TypeError(f"dataset: expected one dataset, found a {type(data).__name__} of datasets {names}; "
                        f"pass one of them (e.g. dataset[{names[0]!r}])")


def to_arrow(data: Any, columns: Sequence[str] | None = None) -> pa.Table:
    """One dataset as an in-memory Arrow table (only `columns`, in that order, when given).

    Example:
        >>> to_arrow([{"a": "x", "label": 1}], columns=["label"]).column_names
        ['label']
    """
    cols = list(columns) if columns else None
    if isinstance(data, pa.Table):
        return select_columns(data, cols)
    _one_dataset(data)
    if _is_hf(data) and hasattr(data, "with_format") and hasattr(data, "__len__"):  # datasets.Dataset
        if cols:
            data = data.select_columns(cols)
        return data.with_format("arrow")[:] if len(data) else data.data.table.slice(0, 0)
    if _is_hf(data):  # datasets.IterableDataset: read it through, in batches
        batches = [pa.Table.from_pydict(b) for b in data.iter(batch_size=1024)]
        return select_columns(pa.concat_tables(batches, promote_options="default") if batches else pa.table({}), cols)
    if is_ray_dataset(data):
        import ray

        if cols:
            data = data.select_columns(cols)
        tables = [t for t in ray.get(data.to_arrow_refs()) if t.num_rows or t.num_columns]
        return pa.concat_tables(tables, promote_options="default") if tables else pa.table({c: [] for c in cols or []})
    if _is_pandas(data):
        return select_columns(pa.Table.from_pandas(data, preserve_index=False), cols)
    if is_paths(data):
        return read_files(data, cols)
    if isinstance(data, Mapping):
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"dict of columns has columns of different lengths: {lengths}")
        return select_columns(pa.table({k: list(v) for k, v in data.items()}), cols)
    if isinstance(data, (list, tuple)):
        if not all(isinstance(r, Mapping) for r in data):
            raise TypeError("dataset list: expected a list of dicts (one per row)")
        return select_columns(pa.Table.from_pylist([dict(r) for r in data]), cols)
    raise TypeError(f"dataset: expected {ACCEPTED}; found {type(data).__name__}")


def to_ray(data: Any):
    """One dataset as a ``ray.data.Dataset``; data files are read lazily by Ray tasks.

    JSON-array files cannot be split, so they are parsed here and handed to Ray as a table.

    Example:
        >>> ds = to_ray("train.parquet")  # doctest: +SKIP
        >>> ds = to_ray([{"query": "q", "passage": "p", "label": 1}])  # doctest: +SKIP
    """
    import ray.data

    if is_ray_dataset(data):
        return data
    _one_dataset(data)
    if is_paths(data):
        files = data_files(data)
        fmt = file_format(files)
        if fmt == "json" and any(is_json_array(f) for f in files):
            return ray.data.from_arrow(read_files(files))
        reader = {"parquet": ray.data.read_parquet, "json": ray.data.read_json, "csv": ray.data.read_csv}[fmt]
        kwargs = {"lines": True} if fmt == "json" and all(f.endswith(".jsonl") for f in files) else {}
        return reader(files, **kwargs)
    if _is_hf(data) and hasattr(data, "__len__"):
        return ray.data.from_huggingface(data)
    table = to_arrow(data)
    if table.num_rows == 0:
        raise ValueError(f"dataset is empty: found a {type(data).__name__} with no rows")
    return ray.data.from_arrow(table)


def column_names(data: Any) -> list[str]:
    """Column names of one dataset, reading as little as possible (a parquet schema, one JSON/CSV file).

    Example:
        >>> column_names([{"query": "q", "passage": "p", "label": 1}])
        ['query', 'passage', 'label']
    """
    _one_dataset(data)
    if isinstance(data, pa.Table) or (_is_hf(data) and data.column_names is not None):
        return list(data.column_names)
    if is_ray_dataset(data):
        return list(data.columns())
    if _is_pandas(data):
        return [str(c) for c in data.columns]
    if _is_hf(data):  # an IterableDataset of unknown features
        return list(first_row(data))
    if is_paths(data):
        files = data_files(data)
        if file_format(files) == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(files[0]).names)
        return list(read_file(files[0]).column_names)
    if isinstance(data, Mapping) and not is_dataset_dict(data):
        return list(data)
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping):
        return list(data[0])
    raise TypeError(f"cannot read column names from a {type(data).__name__}; expected {ACCEPTED}")


def first_row(data: Any) -> dict[str, Any]:
    """The first row of one dataset (a parquet file is read one batch deep).

    Example:
        >>> first_row({"query": ["q1", "q2"], "label": [1, 0]})
        {'query': 'q1', 'label': 1}
    """
    _one_dataset(data)
    if is_ray_dataset(data):
        rows = data.take(1)
    elif is_paths(data):
        files = data_files(data)
        if file_format(files) == "parquet":
            import pyarrow.parquet as pq

            batch = next(pq.ParquetFile(files[0]).iter_batches(batch_size=1), None)
            rows = batch.to_pylist() if batch is not None else []
        else:
            rows = read_file(files[0]).slice(0, 1).to_pylist()
    elif _is_hf(data) and not hasattr(data, "__len__"):  # IterableDataset: read one row, not all
        rows = [row for row, _ in zip(data, range(1))]
    else:
        rows = to_arrow(data).slice(0, 1).to_pylist()
    if not rows:
        raise ValueError(f"dataset is empty: found a {type(data).__name__} with 0 rows")
    return dict(rows[0])


def load_records(data: Any) -> list[dict[str, Any]]:
    """One (small) dataset as a list of row dicts: evaluation sets, tests.

    Example:
        >>> load_records({"query": ["q"], "label": [1]})
        [{'query': 'q', 'label': 1}]
    """
    if is_ray_dataset(data):
        return data.take_all()
    return to_arrow(data).to_pylist()

