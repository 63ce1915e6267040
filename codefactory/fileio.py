"""Crash-safe file writes: whole files are replaced atomically, log lines are appended whole."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def dumps_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":")) + "\n"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def atomic_write_jsonl(path: Path, records: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(dumps_line(r) for r in records))


def append_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Append whole lines and fsync; a torn final line from an earlier crash is cut off first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(path)
    data = "".join(dumps_line(r) for r in records)
    if not data:
        return
    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Complete lines only: a line without its newline is a write that never finished."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            if line.strip():
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
