"""Crash-safe file writes: whole files are replaced atomically, log lines are appended whole."""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

# Test hook for the crash tests (tests/test_reliability.py): `CODEFACTORY_TEST_KILL_AT=<point>[#n]` SIGKILLs
# the process the n-th time (default 1st) it reaches <point>, which is `before-replace:<file name>` (a whole
# new file written and synced, not yet renamed over the old one) or `torn-append:<file name>` (half of
# the appended lines written). Unset, it costs one environment lookup per write.
TEST_KILL_ENV = "CODEFACTORY_TEST_KILL_AT"
_reached: Counter[str] = Counter()
# `.{name}.{pid}.{random}.tmp`: the pid lets the lock holder tell a dead writer's leftovers from live ones.
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def dumps_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":")) + "\n"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target."""
    _atomic_write(path, lambda handle: handle.write(text))


def atomic_write_bytes(path: Path, parts: Iterable[bytes | memoryview]) -> None:
    """Like atomic_write_text, for bytes in pieces: slices of a large file are written without a copy."""
    _atomic_write(path, lambda handle: handle.writelines(parts), binary=True)


def _atomic_write(path: Path, write: Callable[[Any], object], *, binary: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if _kill_point(f"before-replace:{path.name}"):
            _die()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    # Streamed, not built as one string: a single character beyond U+FFFF makes Python store a whole
    # str at 4 bytes a character, and chunks.json of Go's standard library then took 535 MB at once.
    # In batches of pieces, not one write call per piece as json.dump makes: 15% faster.
    def write(handle: TextIO) -> None:
        pieces = _JSON_ENCODER.iterencode(data)
        while batch := "".join(islice(pieces, 4096)):
            handle.write(batch)
        handle.write("\n")

    _atomic_write(path, write)


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, indent=2)


def atomic_write_jsonl(path: Path, records: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(dumps_line(r) for r in records))


def append_jsonl(path: Path, records: Iterable[Any], *, sync: bool = True) -> None:
    """Append whole lines; a torn final line from an earlier crash is cut off first.

    Written lines survive the process being killed either way; `sync` also waits until they are on
    disk (power loss), which callers appending many small batches do once at the end (`fsync_file`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(path)
    data = "".join(dumps_line(r) for r in records)
    if not data:
        return
    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        if _kill_point(f"torn-append:{path.name}"):
            handle.write(data[: len(data) // 2])
            handle.flush()
            _die()
        handle.write(data)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())


def fsync_file(path: Path) -> None:
    """Wait until what was written to `path` is on disk."""
    if path.exists():
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())


def complete_lines(path: Path) -> Iterator[str]:
    """The file's non-blank lines that ended with their newline: a line without it is a write that never finished."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            if line.strip():
                yield line


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of the complete lines; a line that is not JSON is skipped."""
    for line in complete_lines(path):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def _repair_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        content = handle.read()
        handle.truncate(content.rfind(b"\n") + 1)


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete the temp files of atomic writes whose writer died before renaming them; returns them."""
    removed = []
    for candidate in directory.glob(".*.tmp"):
        match = _TEMP_NAME.match(candidate.name)
        if match and not _alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or no way to tell: leave its file alone
    return True


def _kill_point(point: str) -> bool:
    """Whether the crash-test hook wants this process to die at `point` now."""
    wanted = os.environ.get(TEST_KILL_ENV)
    if not wanted:
        return False
    name, _, nth = wanted.partition("#")
    if name != point:
        return False
    _reached[point] += 1
    return _reached[point] == int(nth or 1)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
