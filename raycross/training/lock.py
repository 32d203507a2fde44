"""One run per run directory: a lock file that a second trainer on the same directory runs into.

The lock (``.raycross-run.lock``, JSON: host, pid, process start time, since) is created atomically
(``O_CREAT | O_EXCL``). A lock is stale, and taken over with a warning, when its process is gone: on this
host, no process with that pid and start time; on another host, no heartbeat (the holder touches the
file every ``HEARTBEAT_S``) for ``STALE_AFTER_S``.

A run directory on a URI (``storage_path="s3://..."``) gets :class:`UriRunLock`: the same JSON record as an
object, rewritten every ``HEARTBEAT_S``. Object stores have no exclusive create, so it is advisory: a second
run that starts while the lock is fresh is refused; two runs whose starts fall within ``CONFIRM_S`` of
each other can both pass. A record not rewritten for ``STALE_AFTER_S`` (holder gone) is taken over.

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
CONFIRM_S = 1.0  # a URI lock is read back this long after writing it: a concurrent writer shows up
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


class UriRunLock:
    """Hold the advisory lock of a run directory on a URI (any pyarrow filesystem) while the block runs.

    Example:
        >>> with UriRunLock("file:///tmp/raycross-doc-run"):  # doctest: +SKIP
        ...     pass
    """

    def __init__(self, uri: str, label: str = "run directory") -> None:
        from raycross.training.location import filesystem_of

        self.uri = f"{uri.rstrip('/')}/{LOCK_FILE}"
        self.fs, self.path = filesystem_of(self.uri)
        self.label = label
        self.token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self._stop = threading.Event()

    def __enter__(self) -> UriRunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        if self.uri in _held:
            raise RunLockedError(f"{self.label} {self.uri} is in use by another trainer in this process")
        holder = self._read()
        if holder and time.time() - float(holder.get("beat", 0)) < STALE_AFTER_S:
            raise RunLockedError(self._message(holder))
        if holder:
            logger.warning("Taking over the stale lock %s (no heartbeat for %.0f s): %s", self.uri, STALE_AFTER_S, holder)
        self.fs.create_dir(self.path.rpartition("/")[0], recursive=True)
        self._write()
        time.sleep(CONFIRM_S)
        holder = self._read()
        if holder.get("token") != self.token:  # another run wrote it in between: it keeps the lock
            raise RunLockedError(self._message(holder))
        _held.add(self.uri)
        threading.Thread(target=self._heartbeat, name="raycross-uri-lock", daemon=True).start()

    def release(self) -> None:
        self._stop.set()
        if self.uri in _held:
            _held.discard(self.uri)
            try:
                if self._read().get("token") == self.token:
                    self.fs.delete_file(self.path)
            except OSError:
                logger.warning("could not remove the run lock %s", self.uri)

    def _message(self, holder: dict[str, Any]) -> str:
        return (f"{self.label} {self.uri.rpartition('/')[0]} is in use by another raycross run (pid {holder.get('pid')} "
                f"on host {holder.get('host')!r}, since {holder.get('since')}; lock {self.uri}). Wait for it to "
                f"finish or choose another run_name. A lock without a heartbeat for {STALE_AFTER_S:.0f} s is taken over.")

    def _write(self) -> None:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "beat": time.time(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with self.fs.open_output_stream(self.path) as f:
            f.write(json.dumps(record).encode())

    def _read(self) -> dict[str, Any]:
        try:
            with self.fs.open_input_stream(self.path) as f:
                data = json.loads(f.read().decode())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {"beat": 0}  # unreadable: judged stale

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self._read().get("token") != self.token:
                    logger.error("the run lock %s was taken by another run", self.uri)
                    return
                self._write()
            except OSError:
                return
