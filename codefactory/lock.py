"""One writer per output directory: a real OS file lock (flock via filelock).

The kernel drops the lock when its process dies, so a crashed run never leaves a stale
lock behind; the holder's pid is written beside it only to name it in the message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from codefactory.errors import LockedError

LOCK_NAME = ".codefactory.lock"


@contextmanager
def output_lock(out: Path, *, timeout: float = 0.0) -> Iterator[None]:
    """Hold the lock of `out` for the duration; LockedError if another run holds it past `timeout` s."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    lock = filelock.FileLock(str(path), timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockedError(
            f"another codefactory run{_holder(out)} is writing to {out}; wait for it to finish "
            f"(or set lock_timeout to wait) and run again"
        ) from None
    try:
        _pid_file(out).write_text(str(os.getpid()), encoding="ascii")
        yield
    finally:
        _pid_file(out).unlink(missing_ok=True)
        lock.release()


def _pid_file(out: Path) -> Path:
    return out / (LOCK_NAME + ".pid")


def _holder(out: Path) -> str:
    try:
        pid = int(_pid_file(out).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return ""
    return f" (pid {pid})"
