"""Data files: which paths a source names, and reading them into one Arrow table.

The rules, decided once for every reader in raycross (training, mining, configs, evaluators):
- a source is a file, a directory (its .parquet/.json/.jsonl/.csv files, sorted by name) or a list of them;
- a directory without data files, a missing path, an unknown suffix or mixed formats is a ValueError /
  FileNotFoundError naming the path;
- a ``.json``/``.jsonl`` file whose first non-blank character is ``[`` is one JSON array of rows; any
  other JSON file is JSON lines;
- files of one source are concatenated with schema promotion (a column missing in one file is null).

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> d = tempfile.mkdtemp(); pq.write_table(pa.table({"q": ["a"], "label": [1]}), os.path.join(d, "x.parquet"))
    >>> read_files(d).to_pylist()
    [{'q': 'a', 'label': 1}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

DATA_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def is_paths(data: Any) -> bool:
    """True for a path or a non-empty list of paths (what :func:`data_files` accepts).

    Example:
        >>> is_paths("train.parquet"), is_paths(["a.csv", "b.csv"]), is_paths([{"q": "a"}])
        (True, True, False)
    """
    if isinstance(data, (str, os.PathLike)):
        return True
    return isinstance(data, (list, tuple)) and bool(data) and all(isinstance(d, (str, os.PathLike)) for d in data)


def data_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The data files a path, directory or list of them names; checks existence, suffixes and one format.

    Example:
        >>> data_files("no/such/file.parquet")
        Traceback (most recent call last):
        ...
        FileNotFoundError: dataset path 'no/such/file.parquet' does not exist
    """
    raw = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[str] = []
    for item in raw:
        path = Path(item).expanduser()
        if path.is_dir():
            # hidden and "_" files are bookkeeping (markers, manifests, temporary parts), as in Spark and HF
            found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in DATA_SUFFIXES and p.is_file()
                           and not p.name.startswith((".", "_")))
            if not found:
                raise ValueError(f"dataset directory {str(item)!r} holds no .parquet/.json/.jsonl/.csv files")
            files.extend(found)
            continue
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"dataset path {str(item)!r}: expected a .parquet, .json, .jsonl or .csv file, "
                             f"found {path.suffix or 'no suffix'!r}")
        if not path.is_file():
            raise FileNotFoundError(f"dataset path {str(item)!r} does not exist")
        files.append(str(path))
    file_format(files)
    return files


def file_format(files: Sequence[str]) -> str:
    """The one format (parquet, json or csv) of `files`; ValueError when they mix formats.

    Example:
        >>> file_format(["a.jsonl", "b.json"])
        'json'
    """
    formats = {DATA_SUFFIXES[Path(f).suffix.lower()] for f in files}
    if len(formats) != 1:
        raise ValueError(f"dataset paths mix formats {sorted(formats)}; pass files of one format")
    return formats.pop()


def is_json_array(path: str | os.PathLike) -> bool:
    """True when a JSON file holds one array of rows (first non-blank character ``[``), not JSON lines.

    Example:
        >>> import tempfile; p = tempfile.mktemp(suffix=".json"); _ = open(p, "w").write('  [{"a": 1}]')
        >>> is_json_array(p)
        True
    """
    with open(path, encoding="utf-8-sig") as f:
        return f.read(4096).lstrip()[:1] == "["


def read_file(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """One data file as an Arrow table (only `columns`, in that order, when given).

    Example:
        >>> read_file("train.parquet", columns=["query"])  # doctest: +SKIP
    """
    fmt = DATA_SUFFIXES.get(Path(path).suffix.lower())
    if fmt == "parquet":
        import pyarrow.parquet as pq

        present = set(pq.read_schema(path).names)
        wanted = [c for c in columns if c in present] if columns else None
        table = pq.read_table(path, columns=wanted)  # only what is asked (select_columns names the rest)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(path)
    elif fmt == "json":
        if is_json_array(path):
            with open(path, encoding="utf-8-sig") as f:
                rows = json.load(f)
            table = pa.Table.from_pylist(rows)
        else:
            import pyarrow.json as pjson

            table = pjson.read_json(path)
    else:
        raise ValueError(f"dataset path {str(path)!r}: expected a .parquet, .json, .jsonl or .csv file")
    return select_columns(table, columns, str(path))


def read_files(source: str | os.PathLike | Sequence[str | os.PathLike], columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of every file a source names (see :func:`data_files`), concatenated into one table.

    Example:
        >>> read_files(["a.parquet", "b.parquet"]).num_rows  # doctest: +SKIP
        2000
    """
    files = data_files(source)
    tables = [read_file(f, columns) for f in files]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:
        raise ValueError(f"dataset files {files[:3]}{'...' if len(files) > 3 else ''} do not share one schema: "
                         f"{exc}") from None


def select_columns(table: pa.Table, columns: Sequence[str] | None, where: str = "dataset") -> pa.Table:
    """`table` with only `columns`, in that order (all when None); ValueError naming the missing ones.

    Example:
        >>> select_columns(pa.table({"a": [1], "b": [2]}), ["b"]).column_names
        ['b']
    """
    if not columns:
        return table
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{where}: columns {missing} not found; the data has {table.column_names}")
    return table.select(list(columns))


def write_file(table: pa.Table, path: str | os.PathLike) -> str:
    """Write a table to .parquet, .jsonl/.json (JSON lines) or .csv by suffix; returns the absolute path.

    Example:
        >>> import tempfile, os
        >>> out = write_file(pa.table({"q": ["a"], "score": [0.5]}), os.path.join(tempfile.mkdtemp(), "s.jsonl"))
        >>> read_files(out).to_pylist()
        [{'q': 'a', 'score': 0.5}]
    """
    out = Path(path).expanduser().resolve()
    suffix = out.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(f"expected a .parquet, .jsonl, .json or .csv file, found {str(path)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, out)
    else:
        with open(out, "w", encoding="utf8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(out)
