"""One writer per output directory: a real OS file lock (flock), held for a whole command.

The kernel drops a flock when its holder dies, so a SIGKILLed run never blocks the next one: the
lock file it leaves behind is just a file. The holder writes its pid into the lock file only so that
a refused run can name it. The lock file is removed on release (a run waiting on it notices the
unlinked file and takes a fresh one), and an output directory that only the lock created is removed
too, so a run that stops early (an unreachable endpoint) leaves nothing behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codefactory.errors import LockedError
from codefactory.fileio import remove_stale_temp_files

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt lock below, without the holder's pid
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".codefactory.lock"
_POLL = 0.1

# Output directories this process holds, with their nesting depth: a command holds the lock and the
# library functions it calls take it again.
_held: dict[Path, int] = {}


@contextmanager
def output_lock(out: Path, *, timeout: float = 0.0) -> Iterator[None]:
    """Hold the lock of `out` for the duration; LockedError if another run holds it past `timeout` s."""
    key = out.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    if fcntl is None:
        with _portable_lock(out, timeout):
            _held[key] = 1
            try:
                yield
            finally:
                del _held[key]
        return
    fd, created = _acquire(out, timeout)
    _held[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        remove_stale_temp_files(out)  # what writers killed mid-write left; only the holder may tidy
        yield
    finally:
        del _held[key]
        _release(out, fd, created)


def _acquire(out: Path, timeout: float) -> tuple[int, bool]:
    """(fd holding the lock, whether this call created `out`)."""
    path = out / LOCK_NAME
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        created = not out.is_dir()
        out.mkdir(parents=True, exist_ok=True)  # again after a holder that created it removed it
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                waited = f" (waited {timeout:g} s)" if timeout > 0 else ""
                raise LockedError(
                    f"another codefactory run{holder} is writing to {out}{waited}: run again when it has "
                    "finished, or set lock_timeout (CODEFACTORY_LOCK_TIMEOUT) to wait for it"
                ) from None
            time.sleep(_POLL)
            continue
        # The previous holder unlinks the file before it lets go: a lock on that orphan guards nothing.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            return fd, created
        os.close(fd)


def _release(out: Path, fd: int, created: bool) -> None:
    try:
        os.unlink(out / LOCK_NAME)  # while still held, so no waiter can lock this inode and think it won
    except FileNotFoundError:
        pass
    os.close(fd)  # drops the flock
    if created:
        try:
            out.rmdir()  # only succeeds when nothing else was written to it
        except OSError:
            pass


def _holder(fd: int) -> str:
    try:
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError):
        return ""
    return f" (pid {pid})"


@contextmanager
def _portable_lock(out: Path, timeout: float) -> Iterator[None]:
    import filelock

    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(out / LOCK_NAME), timeout=max(timeout, 0.0))
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockedError(f"another codefactory run is writing to {out}: run again when it has finished, "
                          "or set lock_timeout (CODEFACTORY_LOCK_TIMEOUT) to wait for it") from None
    try:
        remove_stale_temp_files(out)
        yield
    finally:
        lock.release()
