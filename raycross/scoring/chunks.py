"""Where a scoring run reads and writes: the input cut into fixed chunks of rows (the unit of work and of
resume), one output parquet file per chunk, and the manifest that ties a rerun to the same input.

Example:
    >>> import pyarrow as pa
    >>> rows = TableRows(pa.table({"q": ["a", "b", "c"]}))
    >>> rows.read(1, 3).column("q").to_pylist()
    ['b', 'c']
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raycross.data.arrow_rows import ParquetRows as _ParquetRows

STATE_DIR = ".raycross-scoring"  # hidden: parquet readers (pyarrow, Ray Data, raycross) skip it
MANIFEST = "manifest.json"


class TableRows:
    """Rows of an Arrow table held by this process (memory-mapped for HF datasets)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.num_rows = table.num_rows
        self.schema = table.schema

    def read(self, start: int, stop: int) -> pa.Table:
        return self.table.slice(start, stop - start)

    def fingerprint(self) -> str:
        """A hash of the content (streamed over record batches; nothing is copied whole)."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(str(self.schema).encode())
        for batch in self.table.to_batches(max_chunksize=65536):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            digest.update(sink.getvalue())
        return f"table:{self.num_rows}:{digest.hexdigest()}"


class ParquetRows(_ParquetRows):
    """Parquet rows of a scoring input, with a fingerprint (paths, sizes, modification times)."""

    def fingerprint(self) -> str:
        stats = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in self.paths]
        return "parquet:" + hashlib.blake2b(json.dumps(stats).encode(), digest_size=16).hexdigest()


@dataclass
class Manifest:
    """What a scoring run promised to write; a rerun into the same directory must promise the same."""

    input: str
    num_rows: int
    chunk_rows: int
    input_columns: list[str]
    label_column: str
    teacher: str
    apply_activation: bool
    staged: list[str] = field(default_factory=list)

    @property
    def num_chunks(self) -> int:
        return -(-self.num_rows // self.chunk_rows)

    def check_same(self, other: Manifest, where: Path) -> None:
        keys = ("input", "num_rows", "chunk_rows", "input_columns", "label_column", "teacher", "apply_activation")
        changed = [k for k in keys if getattr(self, k) != getattr(other, k)]
        if changed:
            detail = ", ".join(f"{k}: {getattr(other, k)!r} before, {getattr(self, k)!r} now" for k in changed)
            raise ValueError(
                f"output_path={str(where)!r} holds a scoring run of other settings ({detail}); pass another "
                "output_path, or overwrite=True to score again from scratch"
            )


class OutputDir:
    """``part-00000.parquet`` per chunk (written atomically), the manifest under :data:`STATE_DIR`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().absolute()
        self.state = self.path / STATE_DIR

    def part(self, chunk: int) -> Path:
        return self.path / f"part-{chunk:05d}.parquet"

    def done(self, num_chunks: int) -> set[int]:
        return {i for i in range(num_chunks) if self.part(i).is_file()}

    def read_manifest(self) -> Manifest | None:
        path = self.state / MANIFEST
        if not path.is_file():
            return None
        return Manifest(**json.loads(path.read_text(encoding="utf8")))

    def write_manifest(self, manifest: Manifest) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        write_atomic_text(self.state / MANIFEST, json.dumps(asdict(manifest), indent=2))

    def clear(self) -> None:
        import shutil

        for part in self.path.glob("part-*.parquet"):
            part.unlink()
        shutil.rmtree(self.state, ignore_errors=True)

    def write_part(self, chunk: int, table: pa.Table) -> None:
        final = self.part(chunk)
        tmp = final.with_name(f".{final.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)  # readers and reruns never see half a part


def write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf8")
    os.replace(tmp, path)
