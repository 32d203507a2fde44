"""Write a directory as a whole: after a kill at any moment it holds either its complete previous content
or the complete new one, never a mix.

The new files are written into a staging directory next to the target; every entry of the target that the
new export does not replace (checkpoints, logs, anything the previous export did not write) is hard-linked
into it (no data is copied); then the two directories are exchanged in one atomic ``renameat2
(RENAME_EXCHANGE)`` (Linux). Elsewhere, or where the filesystem refuses, the target is renamed aside and
the staging directory renamed in its place; :func:`recover_export` (run at the next start) puts the
previous one back if a kill fell between the two renames. Staging directories of killed exports are
removed at the next start too.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "model"
    >>> export_directory(out, lambda tmp: (tmp / "config.json").write_text("{}"))
    >>> sorted(p.name for p in out.iterdir())
    ['.raycross-export.json', 'config.json']
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

EXPORT_MANIFEST = ".raycross-export.json"
"""The names of the entries the last export wrote (the next export replaces exactly those)."""


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.export-"


def _aside_prefix(out: Path) -> str:
    return f".{out.name}.previous-"


def export_directory(out: str | Path, write: Callable[[Path], None]) -> None:
    """Fill a fresh directory with `write` and make it `out`'s content, keeping the entries of `out` that
    the previous export did not write (checkpoints, logs).

    Raises:
        OSError: writing failed (``out`` is untouched); a full disk is reported with the place.
    """
    out = Path(out).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_export(out)
    staging = out.parent / f"{_staging_prefix(out)}{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        try:
            write(staging)
        except OSError as error:
            raise_if_no_space(error, f"the final model for {out}")
            raise
        written = sorted(p.name for p in staging.iterdir())
        (staging / EXPORT_MANIFEST).write_text(json.dumps({"entries": written}), encoding="utf8")
        if not out.exists():
            os.replace(staging, out)
            return
        if not out.is_dir():
            raise NotADirectoryError(f"output_dir {out} exists and is not a directory")
        _keep_entries(out, staging, set(written))
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _previous_entries(out: Path) -> set[str]:
    try:
        return set(json.loads((out / EXPORT_MANIFEST).read_text(encoding="utf8"))["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _keep_entries(out: Path, staging: Path, written: set[str]) -> None:
    """Hard-link every entry of `out` that survives the export into `staging`."""
    replaced = written | _previous_entries(out) | {EXPORT_MANIFEST}
    for entry in out.iterdir():
        if entry.name in replaced:
            continue
        _link_tree(entry, staging / entry.name)


def _link_tree(source: Path, target: Path) -> None:
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        target.mkdir()
        for child in source.iterdir():
            _link_tree(child, target / child.name)
    else:
        try:
            os.link(source, target)
        except OSError:  # another filesystem below out (a mount point), or links not supported
            shutil.copy2(source, target)


def _swap(staging: Path, out: Path) -> None:
    """Make `staging` the new `out` (atomically where the OS allows); `staging` then holds the old one."""
    if _exchange(staging, out):
        return
    aside = out.parent / f"{_aside_prefix(out)}{uuid.uuid4().hex[:8]}"
    os.replace(out, aside)
    os.replace(staging, out)
    os.replace(aside, staging)  # removed by the caller


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories with one ``renameat2(RENAME_EXCHANGE)``; False where unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, f"cannot exchange {a} and {b}: {os.strerror(code)}")


def recover_export(out: str | Path) -> list[str]:
    """Undo the traces of a killed export of `out`: put a previous export renamed aside back (when `out`
    is missing) and delete staging directories. Returns what was removed or restored."""
    out = Path(out).expanduser().absolute()
    if not out.parent.is_dir():
        return []
    done = []
    asides = sorted(p for p in out.parent.iterdir() if p.name.startswith(_aside_prefix(out)))
    if asides and not out.exists():
        os.replace(asides[-1], out)
        logger.warning("Restored %s from %s (an export was interrupted)", out, asides[-1])
        done.append(str(asides[-1]))
        asides = asides[:-1]
    for path in asides + [p for p in out.parent.iterdir() if p.name.startswith(_staging_prefix(out))]:
        shutil.rmtree(path, ignore_errors=True)
        done.append(str(path))
    if done:
        logger.info("Removed %d leftover(s) of an interrupted export of %s", len(done), out)
    return done


def raise_if_no_space(error: OSError, what: str) -> None:
    """Re-raise a full-disk error as one that says so and where; other errors pass through unchanged."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        raise OSError(error.errno, f"no space left on the device while writing {what} "
                                   f"({error.filename or what}); earlier checkpoints and the previous model are "
                                   "intact: free space and rerun to resume") from error
