"""Atomic file writes: a reader sees either the old file or the complete new one, never a partial one.

A write goes to `.<name>.<pid>-<random>.tmp` beside its target and is renamed over it when complete. A process
killed mid-write (SIGKILL) leaves that temporary behind; the next write of the same target removes the temporaries
whose writer is no longer running, so a restarted run leaves no partial file.

`VISMECH_TEST_WRITE_DELAY` (seconds; test-only) makes every write wait that long between finishing its temporary
and the rename, so that a test can kill a run at a chosen write (tests/test_resume.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import VismechError

TEMP_SUFFIX = ".tmp"


def _writable_parent(path: Path) -> Path:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VismechError(f"cannot create output folder '{parent}' ({exc.strerror}); give a writable folder") from None
    if not os.access(parent, os.W_OK):
        raise VismechError(f"output folder '{parent}' is not writable; give a writable folder")
    return parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> int:
    """Delete temporaries of `path` left by writers that are no longer running; returns how many."""
    removed = 0
    prefix = f"{path.name}."
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return 0
    for p in siblings:
        # also `..name.<pid>-x.tmp.<pid>-y.tmp`: a nested atomic write into a temporary folder (Store.finding)
        bare = p.name.lstrip(".")
        if not (p.name.startswith(".") and bare.startswith(prefix) and p.name.endswith(TEMP_SUFFIX)):
            continue
        pid = bare[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
            continue  # a write in progress (ours or a live process's)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else os.unlink(p)
        removed += 1
    return removed


def _test_delay() -> None:
    delay = os.environ.get("VISMECH_TEST_WRITE_DELAY")
    if delay:
        time.sleep(float(delay))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    parent = _writable_parent(path)
    remove_stale_temporaries(path)
    try:
        return _write_bytes(path, parent, data)
    except OSError as exc:
        if exc.filename is None:  # a full disk says so on write or fsync, without naming what was being written
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def _write_bytes(path: Path, parent: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; a result should read like any other file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _test_delay()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; it replaces `path` only if the block completes."""
    path = Path(path)
    parent = _writable_parent(path)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX))
    try:
        yield tmp
        # mkdtemp makes a 0700 folder and some writers make 0600 files; the result should read like any other
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod((0o777 if p.is_dir() else 0o666) & ~_umask())
        _test_delay()
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
