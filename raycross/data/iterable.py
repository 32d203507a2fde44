"""A clear error for HF ``IterableDataset`` / ``IterableDatasetDict`` inputs where raycross needs the rows
up front (training and mining), naming what to pass instead.

Example:
    >>> check_not_iterable([{"q": "a", "p": "b"}], "train_dataset")  # a list of rows is fine
"""

from __future__ import annotations

from typing import Any


def is_hf_iterable(data: Any) -> bool:
    """True for a ``datasets.IterableDataset`` or ``IterableDatasetDict`` (checked without importing datasets)."""
    return type(data).__name__ in ("IterableDataset", "IterableDatasetDict") and type(data).__module__.startswith(
        "datasets"
    )


def check_not_iterable(data: Any, argument: str) -> None:
    """Raise a ValueError naming the alternatives when `data` (or a value of a dict of datasets) is an HF
    IterableDataset (sentence-transformers 6.2 refuses it in its trainer with a ValueError too)."""
    values = list(data.values()) if isinstance(data, dict) and not is_hf_iterable(data) else [data]
    if any(is_hf_iterable(v) for v in values):
        raise ValueError(
            f"{argument}: an HF IterableDataset is not supported here. Stream large data as a ray.data.Dataset "
            "(ray.data.from_huggingface(...) or ray.data.read_parquet(...)) or as parquet/json/csv file paths, or "
            "materialize it with datasets.Dataset.from_generator(lambda: iter(dataset), features=dataset.features)."
        )
