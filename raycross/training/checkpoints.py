"""Training checkpoints: what goes in one, atomic writes, finding the latest, and rotation.

A checkpoint directory ``checkpoint-<step>`` holds the model in the final-model format
(``save_pretrained``), ``optimizer.pt``, ``scheduler.pt``, ``scaler.pt`` (fp16), ``rng_state_<rank>.pth``
(one per worker), ``trainer_state.json`` (the transformers TrainerState: step, epoch, log history, best
metric) and ``raycross_progress.json`` (the data position and the metrics reported with the checkpoint).

Example:
    >>> to_delete = checkpoints_to_delete(
    ...     [("c1", 1, {"eval_loss": 0.5}), ("c2", 2, {"eval_loss": 0.9}), ("c3", 3, {"eval_loss": 0.7})],
    ...     num_to_keep=1, score_attribute="eval_loss", greater_is_better=False)
    >>> to_delete
    ['c2']
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raycross.training.progress import PROGRESS, Progress

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
SCALER = "scaler.pt"
TRAINING_ARGS = "training_args.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_STATE_FILES = (OPTIMIZER, SCHEDULER, SCALER, TRAINER_STATE, TRAINING_ARGS, PROGRESS)


def rng_file(rank: int) -> str:
    return f"rng_state_{rank}.pth"


def capture_rng() -> dict[str, Any]:
    """The Python, numpy and torch (CPU and CUDA) random states of this process, as tensors and plain
    numbers only (loadable with ``torch.load(..., weights_only=True)``)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(obj: Any, path: str | Path) -> None:
    """Save a state dict (tensors, numbers, strings, lists, dicts) for :func:`load_state`."""
    torch.save(obj, path)


def load_state(path: str | Path, map_location: Any = None) -> Any:
    """Load a state file written by :func:`save_state` without unpickling code (``weights_only=True``).

    Raises:
        ValueError: naming the file, when it holds anything but plain state (a crafted or foreign
            pickle) or is corrupt or truncated.

    Example:
        >>> load_state("out/checkpoint-500/optimizer.pt")  # doctest: +SKIP
    """
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: refused to load: the file holds more than plain state (tensors, numbers, "
                         f"strings) and loading it would run code from it ({str(error).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: corrupt or truncated state file ({error})") from None


def scheduler_state(scheduler: Any) -> dict[str, Any]:
    """A LambdaLR's state without its schedule functions: the schedule is rebuilt from the training
    arguments on resume (as in transformers), so a larger ``max_steps`` stretches it."""
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}


def load_scheduler_state(scheduler: Any, state: dict[str, Any]) -> None:
    """Restore :func:`scheduler_state` (the step count and last learning rates) into `scheduler`."""
    state = dict(state)
    state["lr_lambdas"] = [None] * len(getattr(scheduler, "lr_lambdas", []))
    scheduler.load_state_dict(state)


def file_sizes(directory: str | Path) -> dict[str, int]:
    """Size of every file under `directory` (relative posix path -> bytes), for the progress record."""
    directory = Path(directory)
    return {p.relative_to(directory).as_posix(): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}


def verify_checkpoint(directory: str | Path) -> Progress:
    """The progress record of a complete checkpoint; a ValueError naming the file when the record is
    missing or unreadable, or a file is missing or has another size than when it was written."""
    directory = Path(directory)
    progress = Progress.read(directory)
    for name, size in progress.files.items():
        path = directory / name
        if not path.is_file():
            raise ValueError(f"{path}: missing from the checkpoint (an incomplete copy?)")
        if path.stat().st_size != size:
            raise ValueError(f"{path}: truncated or corrupt: {path.stat().st_size} bytes, {size} when written")
    return progress


INTERRUPTED_PREFIXES = (".tmp-", ".old-")


def clean_interrupted_writes(run_dir: str | Path) -> list[str]:
    """Remove what killed checkpoint writes left in a local run directory (``.tmp-*`` directories); a
    checkpoint moved aside (``.old-<name>-*``) whose replacement never arrived is put back. Returns what
    was removed or restored. Call it only while holding the run's lock.

    Example:
        >>> clean_interrupted_writes("/tmp/nothing-here")
        []
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    done = []
    for child in sorted(run_dir.iterdir()):
        if not child.is_dir() or not child.name.startswith(INTERRUPTED_PREFIXES):
            continue
        if child.name.startswith(".old-"):
            original = run_dir / child.name[len(".old-"):].rsplit("-", 1)[0]
            if not original.exists():
                os.replace(child, original)
                done.append(str(original))
                continue
        shutil.rmtree(child, ignore_errors=True)
        done.append(str(child))
    if done:
        logger.warning("Cleaned %d leftover(s) of interrupted checkpoint writes in %s: %s", len(done), run_dir, done)
    return done


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `final` by a rename once the block succeeds.

    A crash inside the block leaves `final` untouched (and only a hidden ``.tmp-*`` directory behind).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint directory name (``checkpoint-<step>``), else None.

    Example:
        >>> checkpoint_step("checkpoint-40"), checkpoint_step(".tmp-checkpoint-40-ab12")
        (40, None)
    """
    match = _CHECKPOINT_RE.match(name)
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (``checkpoint-<step>`` with a progress file) of a run directory, by step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and (child / PROGRESS).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def read_json(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf8") as f:
        return json.load(f)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)


CHECKPOINT_SCORE = "checkpoint_score"
"""Reported with every checkpoint when a best metric is tracked: the metric's value if the checkpoint's
weights were evaluated at its step, else the worst value. Rotation ranks by it, so a checkpoint that
merely carries the previous evaluation's metrics never ties with (and rotates away) the evaluated one."""


def checkpoint_score(value: float | None, evaluated: bool, greater_is_better: bool) -> float:
    """The rotation score of a checkpoint (see :data:`CHECKPOINT_SCORE`).

    Example:
        >>> checkpoint_score(0.7, evaluated=False, greater_is_better=True)
        -inf
    """
    if evaluated and value is not None:
        return float(value)
    return float("-inf") if greater_is_better else float("inf")


def checkpoints_to_delete(
    entries: list[tuple[Any, int, dict[str, Any]]],
    num_to_keep: int | None,
    score_attribute: str | None,
    greater_is_better: bool = True,
) -> list[Any]:
    """Which checkpoints rotation removes: all but the `num_to_keep` best (by score, else the most recent)
    and the most recent one. Same rule as Ray Train's ``CheckpointConfig(num_to_keep, ...)``.

    `entries` are (handle, step, metrics); checkpoints without the score rank lowest.
    """
    if num_to_keep is None or len(entries) <= num_to_keep:
        return []
    latest = max(entries, key=lambda e: e[1])

    def key(entry: tuple[Any, int, dict[str, Any]]) -> tuple[float, int]:
        if score_attribute is None:
            return (0.0, entry[1])
        value = entry[2].get(score_attribute)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return (float("-inf"), entry[1])
        return ((1.0 if greater_is_better else -1.0) * float(value), entry[1])

    ranked = sorted(entries, key=key)  # worst first
    worst = ranked[: len(ranked) - num_to_keep]
    return [e[0] for e in worst if e is not latest]


def model_only_files(checkpoint_dir: str | Path) -> list[Path]:
    """The files of a checkpoint that make up the model (everything but training state)."""
    checkpoint_dir = Path(checkpoint_dir)
    return [
        p for p in checkpoint_dir.iterdir()
        if p.name not in _STATE_FILES and not p.name.startswith("rng_state_")
    ]


def load_model_weights(hf_model: torch.nn.Module, directory: str | Path) -> None:
    """Load the weights saved by ``save_pretrained`` in `directory` into `hf_model` (in place, same device):
    a full model, an adapter-only save (adapter + head, into the model's adapter), or an FSDP sharded
    checkpoint (gathered into the unsharded `hf_model`).

    Example:
        >>> load_model_weights(model.hf_model, "out/checkpoint-500")  # doctest: +SKIP
    """
    directory = Path(directory)
    from raycross import adapters
    from raycross.training import fsdp

    if fsdp.is_sharded_checkpoint(directory):
        fsdp.load_full_state(hf_model, directory)
        return
    if (directory / adapters.ADAPTER_WEIGHTS).is_file():
        names = adapters.adapter_names(hf_model)
        if not names:
            raise ValueError(f"checkpoint {directory} holds an adapter, but the model has none to load it into")
        adapters.load_adapter_weights(hf_model, directory, names[0])
        return
    if hasattr(hf_model, "load_saved_weights"):  # a module chain saved in several folders (raycross.pooled_scorer)
        hf_model.load_saved_weights(directory)
        return
    if (directory / "model.safetensors.index.json").is_file() or (directory / "pytorch_model.bin.index.json").is_file():
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(hf_model, str(directory), strict=False)
        return
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        try:
            state = load_file(str(directory / "model.safetensors"))
        except Exception as error:  # safetensors raises its own SafetensorError (not an OSError)
            raise ValueError(f"{directory / 'model.safetensors'}: corrupt or truncated weights ({error})") from None
    elif (directory / "pytorch_model.bin").is_file():
        state = load_state(directory / "pytorch_model.bin", map_location="cpu")
    else:
        raise FileNotFoundError(f"no model weights (model.safetensors / pytorch_model.bin) in {directory}")
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    # save_pretrained drops tied copies (e.g. decoder weights tied to embeddings); anything else is an error
    tied = set(getattr(hf_model, "_tied_weights_keys", None) or [])
    really_missing = [k for k in missing if not any(k == t or k.endswith(t) for t in tied)]
    if unexpected or really_missing:
        raise ValueError(
            f"checkpoint {directory} does not match the model: missing {really_missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


def clear_checkpoints(run_dir: str) -> list[str]:
    """Delete the checkpoints (``checkpoint-<step>``) and Ray Train's checkpoint snapshot of a run
    directory (a local path or a URI); returns what was deleted. Used for a fresh start.

    Example:
        >>> clear_checkpoints("/tmp/nothing-here")
        []
    """
    import pyarrow.fs as pafs

    from raycross.training.location import filesystem_of

    fs, root = filesystem_of(run_dir)
    deleted = []
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        name = info.base_name
        if info.type == pafs.FileType.Directory and _CHECKPOINT_RE.match(name):
            fs.delete_dir(info.path)
            deleted.append(info.path)
        elif info.type == pafs.FileType.File and name == "checkpoint_manager_snapshot.json":
            fs.delete_file(info.path)
            deleted.append(info.path)
    return deleted
