"""Where a training run lives: one value for the final model directory, the run directory that holds the
checkpoints (a local path or a URI) and the checkpoint paths inside it.

The rule (transformers' layout, extended for Ray Train storage): without ``storage_path`` the run
directory is ``output_dir`` itself; with it, ``storage_path/run_name`` (a URI such as ``s3://bucket/runs``
works with Ray workers). Ray Train gets ``RunConfig(storage_path=..., name=...)`` from the same value.

Example:
    >>> loc = RunLocation.resolve("/tmp/out")
    >>> loc.run_dir, loc.storage_path, loc.name
    ('/tmp/out', '/tmp', 'out')
    >>> RunLocation.resolve("/tmp/out", "s3://bucket/runs", "exp1").checkpoint_path(500)
    's3://bucket/runs/exp1/checkpoint-500'
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def is_uri(path: str | Path) -> bool:
    """Whether `path` is a URI (``scheme://...``) rather than a local path.

    Example:
        >>> is_uri("gs://b/x"), is_uri("/tmp/x")
        (True, False)
    """
    return "://" in str(path)


def _local(path: str | Path) -> str:
    return str(Path(path).expanduser().absolute())


@dataclass(frozen=True)
class RunLocation:
    """The places of one training run.

    Attributes:
        output_dir: absolute local directory of the final model (and logs).
        storage_path: the parent of the run directory: an absolute local path or a URI.
        name: the run directory's name under ``storage_path`` (Ray Train's run name).
    """

    output_dir: str
    storage_path: str
    name: str

    @classmethod
    def resolve(cls, output_dir: str | Path, storage_path: str | None = None, run_name: str | None = None) -> RunLocation:
        """The location for these settings (see the module docstring for the rule)."""
        out = Path(_local(output_dir))
        if not storage_path:
            return cls(output_dir=str(out), storage_path=str(out.parent), name=out.name)
        storage = str(storage_path).rstrip("/") if is_uri(storage_path) else _local(storage_path)
        return cls(output_dir=str(out), storage_path=storage, name=run_name or out.name)

    @classmethod
    def from_args(cls, args: Any) -> RunLocation:
        """The location of a run with these training arguments (``output_dir``, ``storage_path``, ``run_name``)."""
        return cls.resolve(args.output_dir, getattr(args, "storage_path", None), getattr(args, "run_name", None))

    @property
    def is_remote(self) -> bool:
        """Whether the run directory is a URI (checkpoints on a remote filesystem)."""
        return is_uri(self.storage_path)

    @property
    def run_dir(self) -> str:
        """The directory holding the run's checkpoints: a local path or a URI."""
        if self.is_remote:
            return f"{self.storage_path}/{self.name}"
        return str(Path(self.storage_path) / self.name)

    def checkpoint_name(self, step: int) -> str:
        return f"checkpoint-{int(step)}"

    def checkpoint_path(self, step_or_name: int | str) -> str:
        """The path (or URI) of a checkpoint, by step or by directory name."""
        name = self.checkpoint_name(step_or_name) if isinstance(step_or_name, int) else step_or_name
        return f"{self.run_dir}/{name}" if self.is_remote else str(Path(self.run_dir) / name)

    def filesystem(self) -> tuple[Any, str]:
        """(pyarrow filesystem, path of the run directory on it)."""
        return filesystem_of(self.run_dir)


def filesystem_of(path: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) for a local path or a URI.

    Example:
        >>> fs, root = filesystem_of("/tmp")
        >>> root
        '/tmp'
    """
    import pyarrow.fs as pafs

    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), _local(path)


@contextmanager
def open_checkpoint(path: str, filesystem: Any = None) -> Iterator[Path]:
    """A local directory with the content of checkpoint `path` (itself when local; a temporary download
    of a URI, removed afterwards).

    Example:
        >>> with open_checkpoint("/tmp") as d:
        ...     d.is_dir()
        True
    """
    if not is_uri(path) and (filesystem is None or getattr(filesystem, "type_name", "") == "local"):
        yield Path(path)
        return
    import pyarrow.fs as pafs

    if filesystem is None:
        filesystem, path = filesystem_of(path)
    tmp = Path(tempfile.mkdtemp(prefix="raycross-ckpt-"))
    try:
        pafs.copy_files(path, str(tmp), source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
