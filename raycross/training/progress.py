"""The progress record of a checkpoint (``raycross_progress.json``): raycross's part of the run state next
to transformers' ``trainer_state.json``: where in the data the run stands, the metrics reported with the
checkpoint, and the sizes of the checkpoint's files (to tell a complete checkpoint from a truncated one).

Versioned JSON: a record written by a newer raycross (a higher ``version``) is refused with a clear error;
records of older versions are read with defaults for the fields they lack.

Example:
    >>> p = Progress(epoch=1, micro_step=3, finished=False, world_size=2)
    >>> Progress.from_dict(p.to_dict()) == p
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

PROGRESS = "raycross_progress.json"
PROGRESS_VERSION = 2  # 2: plan_start, plan_totals, plan_offset (resume on another worker count)


@dataclass
class Progress:
    """raycross's state of a run at a checkpoint.

    Attributes:
        epoch: the epoch the run continues in.
        micro_step: the next micro-step of that epoch's plan on ``world_size`` workers.
        metrics: the metrics reported with the checkpoint (rotation ranks by them).
        eval_metrics: the last evaluation's metrics.
        last_eval_step: the step of the last evaluation (-1: none yet).
        finished: whether the run had reached its ``max_steps`` when this was written.
        world_size: the number of workers that wrote the checkpoint.
        max_steps: the run's ``max_steps`` when this was written.
        path: where the checkpoint was persisted (a local path or a URI).
        data_state: the position inside a streamed epoch (owned by the streaming data layer), if any.
        plan_start: when the epoch continued on another worker count than it began with: the global batches
            of each training dataset trained before that plan (see :mod:`raycross.training.epoch_plan`);
            empty for an epoch that runs its whole-epoch plan.
        plan_totals: then, the global batches of each dataset the epoch trains.
        plan_offset: then, the epoch's micro-steps before that plan (per-step seeds continue from it).
        files: size in bytes of every file of the checkpoint (relative path -> size), written last.
        version: the record's format version.
    """

    epoch: int = 0
    micro_step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    last_eval_step: int = -1
    finished: bool = False
    world_size: int = 1
    max_steps: int | None = None
    path: str | None = None
    data_state: dict[str, Any] | None = None
    plan_start: dict[str, int] = field(default_factory=dict)
    plan_totals: dict[str, int] = field(default_factory=dict)
    plan_offset: int = 0
    files: dict[str, int] = field(default_factory=dict)
    version: int = PROGRESS_VERSION

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "progress record") -> Progress:
        """Build from a JSON object; unknown keys of the same version are an error, missing ones default."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, found {type(data).__name__}")
        version = data.get("version", 0)
        if not isinstance(version, int) or version > PROGRESS_VERSION:
            raise ValueError(f"{where}: progress record version {version!r} is newer than this raycross reads "
                             f"(<= {PROGRESS_VERSION}); upgrade raycross to resume from it")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown and version == PROGRESS_VERSION:
            raise ValueError(f"{where}: unknown keys {unknown} in a version-{version} progress record")
        values = {k: v for k, v in data.items() if k in known}
        values["version"] = PROGRESS_VERSION
        try:
            progress = cls(**values)
            progress.epoch, progress.micro_step = int(progress.epoch), int(progress.micro_step)
            progress.last_eval_step, progress.world_size = int(progress.last_eval_step), int(progress.world_size)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: malformed progress record: {error}") from None
        return progress

    def write(self, directory: str | Path) -> Path:
        """Write ``raycross_progress.json`` into `directory` (fsynced)."""
        path = Path(directory) / PROGRESS
        with open(path, "w", encoding="utf8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True, default=str)
            f.flush()
            _fsync(f)
        return path

    @classmethod
    def read(cls, directory: str | Path) -> Progress:
        """Read the record of checkpoint `directory`; a missing, truncated or malformed file raises a
        ValueError (FileNotFoundError when missing) naming the file."""
        path = Path(directory) / PROGRESS
        try:
            text = path.read_text(encoding="utf8")
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no progress record (an incomplete checkpoint?)") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: corrupt or truncated progress record ({error})") from None
        return cls.from_dict(data, where=str(path))

    @classmethod
    def read_or_empty(cls, directory: str | Path) -> Progress:
        """The record of `directory`, or a default one when there is none or it cannot be read."""
        try:
            return cls.read(directory)
        except (OSError, ValueError):
            return cls()


def _fsync(f: Any) -> None:
    import os

    try:
        os.fsync(f.fileno())
    except OSError:  # some filesystems (FUSE mounts) do not support it
        pass
