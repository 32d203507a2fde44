"""One run per run directory: a lock file that a second trainer on the same directory runs into.

The lock (``.raycross-run.lock``, JSON: host, pid, process start time, since) is created atomically
(``O_CREAT | O_EXCL``). A lock is stale, and taken over with a warning, when its process is gone: on this
host, no process with that pid and start time; on another host, no heartbeat (the holder touches the
file every ``HEARTBEAT_S``) for ``STALE_AFTER_S``.

Example:
    >>> import tempfile
    >>> with RunLock(tempfile.mkdtemp()):
    ...     pass
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCK_FILE = ".raycross-run.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
_held: set[str] = set()  # lock files held by this process


class RunLockedError(RuntimeError):
    """Another run holds the run directory."""


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


class RunLock:
    """Hold the lock of run directory `directory` (local) while the block runs.

    Raises:
        RunLockedError: naming the holder (host, pid, since when) and the lock file.
    """

    def __init__(self, directory: str | Path, label: str = "run directory") -> None:
        self.path = Path(directory).expanduser().absolute() / LOCK_FILE
        self.label = label
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path)
        if key in _held:
            raise RunLockedError(f"{self.label} {self.path.parent} is in use by another trainer in this process "
                                 f"(lock {self.path}); one run per directory")
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if not self._stale(holder):
                    raise RunLockedError(
                        f"{self.label} {self.path.parent} is in use by another raycross run (pid {holder.get('pid')} "
                        f"on host {holder.get('host')!r}, since {holder.get('since')}; lock file {self.path}). Wait for "
                        "it to finish or choose another output_dir / run_name. A lock left by a crashed run is taken "
                        "over automatically once its process is gone."
                    ) from None
                logger.warning("Taking over the stale lock %s of a run that is gone (%s)", self.path, holder)
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid()),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            with os.fdopen(fd, "w", encoding="utf8") as f:
                json.dump(me, f)
            _held.add(key)
            self._thread = threading.Thread(target=self._heartbeat, name="raycross-run-lock", daemon=True)
            self._thread.start()
            return
        raise RunLockedError(f"could not take the lock {self.path}: another process keeps taking it")

    def release(self) -> None:
        self._stop.set()
        key = str(self.path)
        if key in _held:
            _held.discard(key)
            try:
                if self._read().get("pid") == os.getpid():
                    self.path.unlink()
            except FileNotFoundError:
                pass

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {"gone": True}
        except (OSError, ValueError):
            return {}  # being written, or garbage: judged by its age

    def _stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("gone"):
            return True
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        pid = holder.get("pid")
        if holder.get("host") == socket.gethostname() and isinstance(pid, int):
            start = _process_start(pid)
            if start is None:
                return True
            recorded = holder.get("start")
            return recorded is not None and abs(start - float(recorded)) > 1.0  # the pid was reused
        return age > STALE_AFTER_S

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return
