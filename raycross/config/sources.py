"""Data sources in a config (``data.train``, ``data.eval``, ``evaluator.data``, ...): parsing and loading.

A source is exactly one of ``path`` (file(s) or a directory of parquet/json/jsonl/csv), ``bundled`` (a
file under ``raycross/resources``) or ``hub`` (a hub dataset id, with ``subset``, ``split``,
``revision``), plus optional ``offline`` (another source used when ``HF_HUB_OFFLINE=1``), ``columns``
(select and order), ``rename`` ({old: new}), ``label_map`` ({value: number}), ``limit``, ``shuffle``
and ``seed``. Files are read by :func:`raycross.data.read_files` (the one reader of raycross).

Example:
    >>> spec = SourceSpec.parse({"bundled": "wordnet-mini/train.parquet", "limit": 5}, "data.train")
    >>> ds = spec.load()
    >>> ds.num_rows, ds.column_names
    (5, ['query', 'positive'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raycross.config.errors import ConfigError, check_keys, expect, expect_mapping, expect_positive_int
from raycross.config.load import hub_offline
from raycross.data import LABEL_COLUMNS, data_files, read_files, split_columns

SOURCE_KINDS = ("path", "bundled", "hub")
SOURCE_KEYS = (*SOURCE_KINDS, "subset", "split", "revision", "offline", "columns", "rename", "label_map",
               "limit", "shuffle", "seed")
HUB_KEYS = ("subset", "split", "revision")


@dataclass(frozen=True)
class SourceSpec:
    """One parsed data source; ``key`` is where it sits in the config (errors name it)."""

    key: str
    kind: str  # path | bundled | hub
    location: str | tuple[str, ...]
    subset: str | None = None
    split: str | None = None
    revision: str | None = None
    offline: SourceSpec | None = None
    columns: tuple[str, ...] | None = None
    rename: dict[str, str] = field(default_factory=dict)
    label_map: dict[Any, Any] = field(default_factory=dict)
    limit: int | None = None
    shuffle: bool = False
    seed: int = 42

    @classmethod
    def parse(cls, value: Any, key: str, check_files: bool = True) -> SourceSpec:
        """Check and type one source mapping; raises ConfigError naming the key.

        Example:
            >>> SourceSpec.parse({"bundled": "wordnet-mini/eval.parquet", "limt": 3}, "data.eval")
            Traceback (most recent call last):
            ...
            raycross.config.ConfigError: config key 'data.eval.limt': unknown key; did you mean 'limit'? ...
        """
        if isinstance(value, str):
            raise ConfigError(key, f"expected a source mapping like {{path: {value!r}}} or {{hub: {value!r}}}, found a string")
        value = expect_mapping(value, key)
        check_keys(value, SOURCE_KEYS, key)
        kinds = [k for k in SOURCE_KINDS if k in value]
        if len(kinds) != 1:
            raise ConfigError(key, f"expected exactly one of {list(SOURCE_KINDS)}, found {kinds or 'none'}")
        kind = kinds[0]
        location = value[kind]
        if kind == "path":
            if not (isinstance(location, str) or (isinstance(location, list) and location
                                                  and all(isinstance(v, str) for v in location))):
                raise ConfigError(f"{key}.path", f"expected a path or a list of paths, found {location!r}")
            location = location if isinstance(location, str) else tuple(location)
        else:
            expect(location, str, f"{key}.{kind}", "a string")
        for name in HUB_KEYS:
            if value.get(name) is not None:
                if kind != "hub":
                    raise ConfigError(f"{key}.{name}", f"only applies to a hub source, found a {kind} source")
                expect(value[name], str, f"{key}.{name}", "a string")
        offline = None
        if value.get("offline") is not None:
            if kind != "hub":
                raise ConfigError(f"{key}.offline", f"only applies to a hub source, found a {kind} source")
            offline = cls.parse(value["offline"], f"{key}.offline", check_files=check_files and hub_offline())
        columns = value.get("columns")
        if columns is not None and not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
            raise ConfigError(f"{key}.columns", f"expected a non-empty list of column names, found {columns!r}")
        rename = expect_mapping(value["rename"], f"{key}.rename") if value.get("rename") is not None else {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in rename.items()):
            raise ConfigError(f"{key}.rename", f"expected {{old_name: new_name}} strings, found {rename!r}")
        label_map = expect_mapping(value["label_map"], f"{key}.label_map") if value.get("label_map") is not None else {}
        for label, target in label_map.items():
            if isinstance(target, bool) or not isinstance(target, (int, float)):
                raise ConfigError(f"{key}.label_map.{label}", f"expected a number (class id or score), found {target!r}")
        expect_positive_int(value.get("limit"), f"{key}.limit")
        if "shuffle" in value:
            expect(value["shuffle"], bool, f"{key}.shuffle", "true or false")
        if value.get("seed") is not None:
            expect(value["seed"], int, f"{key}.seed", "an integer")
        spec = cls(key, kind, location, value.get("subset"), value.get("split"), value.get("revision"), offline,
                   tuple(columns) if columns else None, dict(rename), dict(label_map), value.get("limit"),
                   bool(value.get("shuffle", False)), value.get("seed") if value.get("seed") is not None else 42)
        if check_files and not (kind == "hub" and offline is not None and hub_offline()):
            spec.files()
        return spec

    def resolved(self) -> SourceSpec:
        """The source actually used: ``offline`` when the hub is offline and this is a hub source."""
        if self.kind == "hub" and self.offline is not None and hub_offline():
            return self.offline
        return self

    def files(self) -> list[str] | None:
        """The data files of a ``path``/``bundled`` source (a directory expands to its files); None for hub."""
        if self.kind == "hub":
            return None
        if self.kind == "bundled":
            from raycross.resources import PACKAGE_DIR

            raw: list[str] = [str(PACKAGE_DIR / "resources" / str(self.location))]
        else:
            raw = [self.location] if isinstance(self.location, str) else list(self.location)
        try:
            return data_files([str(Path(p).expanduser()) for p in raw])
        except FileNotFoundError as exc:
            hint = " (bundled files live under raycross/resources/)" if self.kind == "bundled" else ""
            raise ConfigError(f"{self.key}.{self.kind}", f"file not found: {exc}{hint}") from None
        except ValueError as exc:
            raise ConfigError(f"{self.key}.{self.kind}", str(exc)) from None

    def load(self):
        """The rows as an in-memory ``datasets.Dataset`` with the transformations applied, in this order:
        shuffle/limit, ``rename``, ``columns`` (select and order), ``label_map``."""
        spec = self.resolved()
        if spec is not self:
            return spec.load()
        ds = self._read()
        if self.shuffle:
            ds = ds.shuffle(seed=self.seed)
        if self.limit is not None:
            ds = ds.select(range(min(self.limit, ds.num_rows)))
        if self.rename:
            missing = [c for c in self.rename if c not in ds.column_names]
            if missing:
                raise ConfigError(f"{self.key}.rename", f"columns {missing} not found; the data has {ds.column_names}")
            ds = ds.rename_columns(dict(self.rename))
        if self.columns:
            missing = [c for c in self.columns if c not in ds.column_names]
            if missing:
                raise ConfigError(f"{self.key}.columns", f"columns {missing} not found; the data has {ds.column_names}")
            ds = ds.select_columns(list(self.columns))
        if self.label_map:
            ds = self._map_labels(ds)
        if ds.num_rows == 0:
            raise ConfigError(self.key, "the source holds no rows")
        return ds

    def _read(self):
        import datasets

        files = self.files()
        if files is not None:
            from datasets.table import InMemoryTable

            try:
                return datasets.Dataset(InMemoryTable(read_files(files)))
            except ValueError as exc:
                raise ConfigError(self.key, str(exc)) from None
        kwargs = {"split": self.split or "train"}
        if self.revision:
            kwargs["revision"] = self.revision
        try:
            return datasets.load_dataset(str(self.location), self.subset, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any hub/cache failure becomes a config error naming the key
            hint = " (HF_HUB_OFFLINE=1: add an `offline` source)" if hub_offline() and self.offline is None else ""
            raise ConfigError(f"{self.key}.hub", f"cannot load {self.location!r}{hint}: {exc}") from None

    def _map_labels(self, ds):
        key = f"{self.key}.label_map"
        _, label_column = split_columns(ds.column_names)
        if label_column is None:
            raise ConfigError(key, f"no label column ({'/'.join(LABEL_COLUMNS)}) among {ds.column_names}")
        values = ds[label_column]
        unknown = sorted({str(v) for v in values if v not in self.label_map})
        if unknown:
            raise ConfigError(key, f"labels {unknown[:10]} of column {label_column!r} have no entry in label_map "
                                   f"{self.label_map}")
        mapped = [self.label_map[v] for v in values]
        return ds.remove_columns(label_column).add_column(label_column, mapped)


def is_single_source(value: Any) -> bool:
    """True for one source mapping; False for a {dataset name: source} mapping (multi-dataset).

    Example:
        >>> is_single_source({"path": "a.parquet"}), is_single_source({"nli": {"path": "a.parquet"}})
        (True, False)
    """
    return isinstance(value, Mapping) and any(kind in value for kind in SOURCE_KINDS)


# Mapping-level helpers (the names earlier releases exported)
def resolve_source(value: Mapping[str, Any]) -> dict[str, Any]:
    """The source mapping actually used: ``value["offline"]`` when the hub is offline and it is a hub source.

    Example:
        >>> resolve_source({"bundled": "wordnet-mini/train.parquet"})["bundled"]
        'wordnet-mini/train.parquet'
    """
    if "hub" in value and value.get("offline") is not None and hub_offline():
        return dict(value["offline"])
    return dict(value)


def validate_source(value: Any, key: str, check_files: bool = True) -> None:
    """Check one source mapping; raises ConfigError naming the key.

    Example:
        >>> validate_source({"bundled": "wordnet-mini/train.parquet", "limit": 10}, "data.train")
    """
    SourceSpec.parse(value, key, check_files)


def load_source(value: Mapping[str, Any] | SourceSpec, key: str = "data"):
    """Load a source (a mapping or a parsed :class:`SourceSpec`) as an in-memory ``datasets.Dataset``.

    Example:
        >>> load_source({"bundled": "wordnet-mini/train.parquet", "limit": 5}, "data.train").num_rows
        5
    """
    spec = value if isinstance(value, SourceSpec) else SourceSpec.parse(value, key)
    return spec.load()
