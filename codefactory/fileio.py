"""Crash-safe file writes: whole files are replaced atomically, log lines are appended whole."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

# Test hook for the crash tests (tests/test_reliability.py): `CODEFACTORY_TEST_KILL_AT=<point>[#n]` SIGKILLs
# the process the n-th time (default 1st) it reaches <point>, which is `before-replace:<file name>` (a whole
# new file written and synced, not yet renamed over the old one) or `torn-append:<file name>` (half of
# the appended lines written). Unset, it costs one environment lookup per write.
TEST_KILL_ENV = "CODEFACTORY_TEST_KILL_AT"
_reached: Counter[str] = Counter()
# The process's umask, read once (setting it is the only way to read it, and it is process-wide).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
# `.{name}.{pid}.{random}.tmp`: the pid lets the lock holder tell a dead writer's leftovers from live ones.
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def dumps_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":")) + "\n"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target."""
    _atomic_write(path, lambda handle: handle.write(text))


def atomic_write_bytes(path: Path, parts: Iterable[bytes | memoryview], *, durable: bool = True) -> None:
    """Like atomic_write_text, for bytes in pieces: slices of a large file are written without a copy.

    `durable=False` skips the fsync, for caches only: after a power loss such a file may be empty or torn,
    which its reader must take as missing (the rename still means no reader ever sees a half-written file)."""
    _atomic_write(path, lambda handle: handle.writelines(parts), binary=True, durable=durable)


def _atomic_write(path: Path, write: Callable[[Any], object], *, binary: bool = False, durable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); the file it replaces keeps its mode, a new one gets what
        # open() would have given it, as the files appended to get.
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13, where modes mean little
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except OSError:
                mode = 0o666 & ~_UMASK
            os.fchmod(fd, mode)
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")) as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if _kill_point(f"before-replace:{path.name}"):
            _die()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """`json.dumps(data, ensure_ascii=False, indent=2)` and a newline, written atomically as UTF-8 (`json_utf8`)."""
    # Streamed, not built as one string: a single character beyond U+FFFF makes Python store a whole
    # str at 4 bytes a character, and chunks.json of Go's standard library then took 535 MB at once.
    # In batches of pieces, not one write call per piece as json.dump makes: 15% faster.
    def write(handle: BinaryIO) -> None:
        try:
            pieces = _indented_pieces(data)
            while batch := b"".join(islice(pieces, 256)):
                handle.write(batch)
        except _NotPlain:  # a type only the json module knows how to write: start over with it
            handle.seek(0)
            handle.truncate()
            encoded = _JSON_ENCODER.iterencode(data)
            while text := "".join(islice(encoded, 4096)):
                handle.write(json_utf8(text))
        handle.write(b"\n")

    _atomic_write(path, write, binary=True)


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, indent=2)
# The json module's own C string escaper: with an indent, json encodes in Python one token at a time
# (its C encoder only writes compact JSON), 0.5 s for chunks.json of the stdlib.
json_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def json_utf8(text: str) -> bytes:
    """JSON text as UTF-8. A lone surrogate, which UTF-8 cannot hold (a JSON string may), becomes its \\uXXXX escape:
    backslashreplace writes exactly that, and a JSON reader gives back the same string."""
    return text.encode("utf-8", "backslashreplace")


class EncodedJSON(bytes):
    """A value already encoded as `atomic_write_json` writes it at the depth where it is placed, UTF-8 and all:
    written as it is. Lets many small values be encoded where they are made (in worker processes), not all at
    the end; as bytes, they cross back from the workers and are written out without being decoded and encoded
    again. Only among plain values: json's own encoder, the fallback for other types, refuses them."""


def encode_json(value: Any, depth: int = 0) -> EncodedJSON:
    """`value` as `atomic_write_json` writes it at nesting `depth` (its first line not indented)."""
    return EncodedJSON(json_utf8(_indented(value, depth)))


class _NotPlain(Exception):
    """A value other than dict/list/tuple/str/int/float/bool/None, or a key other than str."""


def _indented_pieces(data: Any, depth: int = 0) -> Iterator[bytes]:
    """What `_JSON_ENCODER.iterencode(data)` writes, a piece per item of the two outer levels.

    Deeper values are written as one string each: far fewer pieces, and each one small, so no
    4-byte-a-character string as large as the file (see atomic_write_json). Two levels, as the large files
    hold their many items: chunks.json at the first, project_skeleton.json's files at the second.
    """
    if type(data) is EncodedJSON:
        yield data
        return
    if depth >= 2 or not isinstance(data, (dict, list, tuple)) or not data:
        yield json_utf8(_indented(data, depth))
        return
    inner = "\n" + "  " * (depth + 1)
    if isinstance(data, dict):
        yield b"{"
        for index, (key, value) in enumerate(data.items()):
            if type(key) is not str:
                raise _NotPlain
            yield json_utf8(f"{',' if index else ''}{inner}{json_string(key)}: ")
            yield from _indented_pieces(value, depth + 1)
        closing = b"}"
    else:
        yield b"["
        separator = b"," + inner.encode("utf-8")
        for index, value in enumerate(data):
            yield separator if index else separator[1:]
            yield from _indented_pieces(value, depth + 1)
        closing = b"]"
    yield b"\n" + b"  " * depth + closing


def _indented(value: Any, depth: int) -> str:
    kind = type(value)
    if kind is str:
        return json_string(value)
    if kind is EncodedJSON:  # deeper than the pieces written as they are
        return value.decode("utf-8")
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        return float.__repr__(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = ",\n" + "  " * (depth + 1)
        parts = []
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            # strings and ints, most values of the large files (chunks, symbols), without a call each
            item_kind = type(item)
            if item_kind is str:
                parts.append(f"{json_string(key)}: {json_string(item)}")
            elif item_kind is int:
                parts.append(f"{json_string(key)}: {int.__repr__(item)}")
            else:
                parts.append(f"{json_string(key)}: {_indented(item, depth + 1)}")
        return "{\n" + "  " * (depth + 1) + inner.join(parts) + "\n" + "  " * depth + "}"
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = ",\n" + "  " * (depth + 1)
        return ("[\n" + "  " * (depth + 1) + inner.join([_indented(item, depth + 1) for item in value])
                + "\n" + "  " * depth + "]")
    raise _NotPlain


def atomic_write_jsonl(path: Path, records: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(dumps_line(r) for r in records))


def append_jsonl(path: Path, records: Iterable[Any], *, sync: bool = True) -> tuple[int, bytes]:
    """Append whole lines; a torn final line from an earlier crash is cut off first. Returns the offset where
    the new lines start and their bytes (b"" when there were none), for an index of the file to take up.

    Written lines survive the process being killed either way; `sync` also waits until they are on
    disk (power loss), which callers appending many small batches do once at the end (`fsync_file`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(path)
    data = "".join(dumps_line(r) for r in records).encode("utf-8")
    if not data:
        return 0, b""
    with open(path, "ab") as handle:
        offset = handle.tell()
        if _kill_point(f"torn-append:{path.name}"):
            handle.write(data[: len(data) // 2])
            handle.flush()
            _die()
        handle.write(data)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())
    return offset, data


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


def complete_byte_lines(path: Path) -> list[bytes]:
    """`complete_lines` as bytes, newline included, the file read at once: for lines mostly written back as they
    are (a patched SFT rebuild), where decoding megabytes of text would be the cost."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a line whose write never finished
    return [line + b"\n" for line in lines if line.strip()]


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
