"""Where the training loop runs: in this process (:class:`LocalRuntime`) or as a Ray Train worker
(:class:`RayRuntime`). The loop only talks to this interface: its data shards, collectives, device,
and checkpoint/report calls.

Example:
    >>> rt = LocalRuntime(train_tables={}, eval_tables={}, run_dir="/tmp/run", device="cpu")
    >>> rt.world_size, rt.rank, rt.all_reduce_min(3), rt.broadcast({"a": 1})
    (1, 0, 3, {'a': 1})
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from raycross.training.checkpoints import (
    atomic_directory,
    checkpoints_to_delete,
    list_checkpoints,
)
from raycross.training.progress import Progress

logger = logging.getLogger(__name__)

TRAIN_PREFIX = "train::"
EVAL_PREFIX = "eval::"


class SingleProcess:
    """The collectives of a run alone in this process (world size 1): every one is the identity.

    Example:
        >>> SingleProcess().all_reduce_sum([1.0, 2.0])
        [1.0, 2.0]
    """

    world_size = 1
    rank = 0

    def all_reduce_min(self, value: int) -> int:
        return value

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        return list(values)

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def broadcast(self, obj: Any) -> Any:
        return obj

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        return None


class LocalRuntime(SingleProcess):
    """Training in this process: world size 1, tables given by the driver, checkpoints in `run_dir`.

    Checkpoints are written atomically (temporary directory + rename) and rotated with the same rule as
    Ray Train (``num_to_keep`` best by score, plus the latest).
    """

    is_ray = False

    def __init__(
        self,
        train_tables: dict[str, pa.Table],
        eval_tables: dict[str, pa.Table],
        run_dir: str | Path,
        device: str | torch.device = "cpu",
        num_to_keep: int | None = None,
        score_attribute: str | None = None,
        greater_is_better: bool = True,
        resume_from: str | Path | None = None,
    ) -> None:
        self.train_tables = train_tables
        self.eval_tables = eval_tables
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.num_to_keep = num_to_keep
        self.score_attribute = score_attribute
        self.greater_is_better = greater_is_better
        self.resume_from = Path(resume_from) if resume_from else None
        self.last_checkpoint: str | None = None

    # ------------------------------------------------------------------ data
    def train_table(self, name: str, columns: list[str]) -> pa.Table:
        return self.train_tables[name].select(columns)

    def eval_table(self, name: str, columns: list[str]) -> pa.Table | None:
        return self.eval_tables[name].select(columns)

    def train_blocks(self, name: str, columns: list[str], num_rows: int, block_rows: int, seed: int) -> Any:
        """A streamed training dataset as blocks: parquet files read piecewise, or slices of a table."""
        from raycross.data.blocks import ParquetBlocks, TableBlocks

        data = self.train_tables[name]
        if isinstance(data, pa.Table):
            return TableBlocks(data, block_rows, seed, columns)
        if hasattr(data, "paths"):
            return ParquetBlocks(data.paths, block_rows, seed, columns)
        from raycross.data.blocks import RayShardBlocks

        data.context.execution_options.preserve_order = True  # the same order on a rerun
        return RayShardBlocks(data.iterator(), num_rows, block_rows, columns)

    # ------------------------------------------------------------------ model
    def prepare_model(self, model: Any, find_unused_parameters: bool = False, parallel_strategy: str = "ddp",
                      bf16: bool = False) -> None:
        model.to(self.device)

    # ------------------------------------------------------------------ checkpoints
    @property
    def explicit_resume(self) -> bool:
        """Whether the checkpoint to resume from was asked for (no fallback to an earlier one)."""
        return self.resume_from is not None

    def resume_candidates(self) -> Iterator[Path]:
        """Checkpoints to resume from, best first: the one asked for, else the run's complete checkpoints
        from the latest back (the loop takes the first that loads)."""
        if self.resume_from is not None:
            yield self.resume_from
            return
        for _, path in reversed(list_checkpoints(self.run_dir)):
            yield path

    @contextmanager
    def checkpoint(self, name: str, metrics: dict[str, Any]) -> Iterator[Path]:
        """Write a checkpoint: fill the yielded directory; it becomes ``run_dir/name`` atomically."""
        final = self.run_dir / name
        with atomic_directory(final) as tmp:
            yield tmp
        self.last_checkpoint = str(final)
        self._rotate()

    def checkpoint_path(self, name: str) -> str:
        """Where checkpoint `name` ends up."""
        return str(self.run_dir / name)

    def report(self, metrics: dict[str, Any]) -> None:
        return None

    @contextmanager
    def open_checkpoint(self, path: str) -> Iterator[Path]:
        yield Path(path)

    def _rotate(self) -> None:
        entries = []
        for step, path in list_checkpoints(self.run_dir):
            metrics = Progress.read_or_empty(path).metrics
            entries.append((path, step, metrics))
        for path in checkpoints_to_delete(entries, self.num_to_keep, self.score_attribute, self.greater_is_better):
            logger.info("Deleting older checkpoint %s (save_total_limit=%s)", path, self.num_to_keep)
            shutil.rmtree(path, ignore_errors=True)


class ProcessGroupCollectives:
    """The collectives of a worker in a ``torch.distributed`` process group (needs ``world_size``, ``device``).

    Example:
        >>> class Worker(ProcessGroupCollectives): ...  # doctest: +SKIP
    """

    world_size: int
    device: torch.device

    def _tensor(self, values: list[float], dtype: torch.dtype) -> torch.Tensor:
        device = self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
        return torch.tensor(values, dtype=dtype, device=device)

    def all_reduce_min(self, value: int) -> int:
        tensor = self._tensor([value], torch.int64)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
        return int(tensor.item())

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        tensor = self._tensor(values, torch.float64)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        tensor = self._tensor([1 if flag else 0], torch.int64)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return bool(tensor.item())

    def broadcast(self, obj: Any) -> Any:
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        torch.distributed.barrier()


class RayRuntime(ProcessGroupCollectives):
    """A Ray Train V2 worker: in-memory training data whole from the object store, streamed and evaluation
    data as shards from ``ray.train.get_dataset_shard``, torch.distributed collectives,
    checkpoints through ``ray.train.report`` (every rank reports; Ray merges the rank directories)."""

    is_ray = True

    def __init__(self, resume_from: str | None = None, tables: dict[str, list[Any]] | None = None) -> None:
        import ray.train
        import ray.train.torch

        import ray.data

        self._train = ray.train
        ray.data.DataContext.get_current().enable_progress_bars = False  # one shard read per worker
        context = ray.train.get_context()
        self.world_size = context.get_world_size()
        self.rank = context.get_world_rank()
        self.device = ray.train.torch.get_device()
        self.resume_from = resume_from
        self.tables = tables or {}  # in-memory training datasets: object refs of Arrow tables
        self.last_checkpoint: str | None = None
        clean_stale_temp_dirs()

    # ------------------------------------------------------------------ data
    def train_table(self, name: str, columns: list[str]) -> pa.Table:
        """All rows of in-memory training dataset `name`, zero-copy from the object store (every worker reads
        the whole dataset and takes its own global batches of it: see :mod:`raycross.training.epoch_plan`)."""
        import ray

        tables = [t for t in ray.get(list(self.tables[name])) if t.num_rows]
        if not tables:
            return pa.table({c: pa.array([], type=pa.string()) for c in columns})
        return pa.concat_tables(tables, promote_options="default").select(columns)

    def eval_table(self, name: str, columns: list[str]) -> pa.Table | None:
        from raycross.training.tables import materialize

        return materialize(self._train.get_dataset_shard(EVAL_PREFIX + name), columns)

    def train_blocks(self, name: str, columns: list[str], num_rows: int, block_rows: int, seed: int) -> Any:
        """This worker's shard of a streamed training dataset, block by block through Ray Data (the split
        is equal: ``num_rows // world_size`` rows per worker)."""
        from raycross.data.blocks import RayShardBlocks

        shard = self._train.get_dataset_shard(TRAIN_PREFIX + name)
        return RayShardBlocks(shard, num_rows // self.world_size, block_rows, columns)

    # ------------------------------------------------------------------ model
    def prepare_model(self, model: Any, find_unused_parameters: bool = False, parallel_strategy: str = "ddp",
                      bf16: bool = False) -> None:
        """Move the model to this worker's device and wrap it for data-parallel training: FSDP2 sharding
        (``parallel_strategy="fsdp"``), else DDP when there are several workers."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if parallel_strategy == "fsdp":
            from raycross.training.fsdp import shard_model

            shard_model(model, self.device, bf16=bf16)
            return
        model.to(self.device)
        if self.world_size > 1:
            kwargs = {"find_unused_parameters": True} if find_unused_parameters else {}
            model.wrap_for_training("ddp", **kwargs)

    # ------------------------------------------------------------------ checkpoints
    @property
    def explicit_resume(self) -> bool:
        """Whether resuming from `resume_from` was asked for and the run has no checkpoint of its own."""
        return self.resume_from is not None and self._train.get_checkpoint() is None

    def resume_candidates(self) -> Iterator[Path]:
        """The run's latest checkpoint (after a failure, or a rerun), then its earlier ones on the storage,
        latest first; else the checkpoint asked for. Each is downloaded while the loop reads it."""
        from ray.train import Checkpoint

        latest = self._train.get_checkpoint()
        if latest is None:
            if self.resume_from:
                with Checkpoint(path=self.resume_from).as_directory() as directory:
                    yield Path(directory)
            return
        with latest.as_directory() as directory:
            yield Path(directory)
        for path in self._earlier_checkpoints(latest.path, latest.filesystem):
            with Checkpoint(path=path, filesystem=latest.filesystem).as_directory() as directory:
                yield Path(directory)

    @staticmethod
    def _earlier_checkpoints(latest: str, filesystem: Any) -> list[str]:
        import pyarrow.fs as pafs

        from raycross.training.checkpoints import checkpoint_step

        parent, _, name = latest.rstrip("/").rpartition("/")
        step = checkpoint_step(name)
        if step is None:
            return []
        found = []
        for info in filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True)):
            other = checkpoint_step(info.base_name)
            if info.type == pafs.FileType.Directory and other is not None and other < step:
                found.append((other, info.path))
        return [path for _, path in sorted(found, reverse=True)]

    @contextmanager
    def checkpoint(self, name: str, metrics: dict[str, Any]) -> Iterator[Path]:
        """Fill the yielded local directory; it is then reported (uploaded to storage) under `name`."""
        from ray.train import Checkpoint

        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-{name}-"))
        try:
            yield tmp
            self._train.report(metrics, checkpoint=Checkpoint.from_directory(str(tmp)), checkpoint_dir_name=name)
            _wait_until_collected()
            persisted = self._train.get_checkpoint()
            self.last_checkpoint = persisted.path if persisted is not None else self.checkpoint_path(name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def checkpoint_path(self, name: str) -> str:
        """Where Ray Train persists checkpoint `name` (on the run's storage filesystem)."""
        return self._train.get_context().get_storage().build_checkpoint_path_from_name(name)

    def report(self, metrics: dict[str, Any]) -> None:
        self._train.report(metrics)

    @contextmanager
    def open_checkpoint(self, path: str) -> Iterator[Path]:
        from ray.train import Checkpoint

        filesystem = self._train.get_context().get_storage().storage_filesystem
        with Checkpoint(path=path, filesystem=filesystem).as_directory() as directory:
            yield Path(directory)


_TMP_PREFIX = "raycross-ckpt-"


def clean_stale_temp_dirs() -> list[str]:
    """Remove checkpoint staging directories that killed workers left in this node's temp directory
    (``raycross-ckpt-<pid>-*`` whose process is gone)."""
    import psutil

    removed = []
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{_TMP_PREFIX}*"):
        pid = path.name[len(_TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    if removed:
        logger.info("Removed %d checkpoint staging director(ies) of killed workers: %s", len(removed), removed)
    return removed


def _wait_until_collected(timeout_s: float = 120.0) -> None:
    """Block until the Ray Train controller has taken this worker's last report off its result queue.

    ``ray.train.report`` returns once the checkpoint is uploaded, but the controller registers it only when
    it next polls the workers. A worker that dies before that poll takes its queued report along, and the
    replacement group would restart from an older checkpoint (or from scratch). Checkpoints are rare, so
    waiting one poll interval for each is cheap.
    """
    try:
        from ray.train.v2._internal.execution.context import get_train_context

        results = get_train_context().get_result_queue()
    except (ImportError, AttributeError, RuntimeError):  # Ray internals moved: keep training, unguarded
        logger.debug("cannot reach the Ray Train result queue; not waiting for the controller")
        return
    deadline = time.monotonic() + timeout_s
    while results.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.02)
    if results.unfinished_tasks:
        logger.warning("the Ray Train controller has not collected the checkpoint report after %.0f s", timeout_s)
