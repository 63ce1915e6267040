"""chunks.json for an incremental run: looked up and patched without parsing or re-encoding all of it.

A run that rescanned a few files needs, of every other file's chunks, only those holding a given text (by
sha256), and then replaces the rescanned files' chunks. For a large tree the whole list is tens of MB of
JSON: parsing it and encoding it again cost more than the rest of a 1-file update. `pipeline.write_chunks`
writes the list sorted by path with `indent=2`, where every chunk is an object whose keys `id`, `path` and
`sha256` start lines of their own (a string in JSON never holds a raw newline, so such a line is never
inside a value): the bytes can be searched for those lines, the rescanned files' runs of chunks found by
binary search on the path, and the file rewritten as the unchanged byte ranges around the newly encoded
chunks, the same bytes as encoding the whole patched list. A file in any other layout is parsed whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from codefactory.fileio import atomic_write_bytes, atomic_write_json

# The file's first chunk, its end, the start of every chunk's line after the first, and its two first keys.
_HEAD, _TAIL, _START = b'[\n  {\n    "id": ', b"\n  }\n]\n", b"\n  {\n"
_STRING = rb'"(?:[^"\\\n]|\\.)*"'
_ELEMENT = re.compile(rb'  \{\n    "id": ' + _STRING + rb',\n    "path": (' + _STRING + rb'),\n')
_SHA_LINE = b'\n    "sha256": "'
_SHA = re.compile(re.escape(_SHA_LINE) + rb'([0-9a-f]{64})",\n')
_FEW = 8


class _Layout(Exception):
    """The bytes are not laid out as write_chunks writes them."""


class ChunkIndex:
    def __init__(self, path: Path, data: bytes, entries: list[dict[str, Any]] | None) -> None:
        self.path = path
        self._data = data  # the file, when laid out as write_chunks writes it
        self._entries = entries  # else its parsed chunks

    @classmethod
    def read(cls, path: Path) -> ChunkIndex | None:
        """The chunks.json at `path`; None when it is missing or not a JSON list."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if data.startswith(_HEAD) and data.endswith(_TAIL):
            return cls(path, data, None)
        try:
            entries = json.loads(data)
        except ValueError:
            return None
        return cls(path, b"", entries) if isinstance(entries, list) else None

    def shas(self) -> set[str]:
        """The text hash of every chunk."""
        if self._entries is not None:
            return {e["sha256"] for e in self._entries}
        return {m.group(1).decode("ascii") for m in _SHA.finditer(self._data)}

    def with_sha(self, shas: Collection[str]) -> list[dict[str, Any]]:
        """The chunks, in file order, whose text has one of these hashes."""
        wanted = set(shas)
        if not wanted:
            return []
        if self._entries is not None:
            return [e for e in self._entries if e["sha256"] in wanted]
        data = self._data
        if len(wanted) <= _FEW:  # a search for each hash beats one pass over every chunk's hash line
            offsets = sorted(at for sha in wanted for at in self._sha_lines(sha))
        else:
            offsets = [m.start() for m in _SHA.finditer(data) if m.group(1).decode("ascii") in wanted]
        found = []
        for at in offsets:
            start = data.rfind(_START, 0, at) + 1
            end = data.find(b"\n  }", at + len(_SHA_LINE)) + len(b"\n  }")
            found.append(json.loads(data[start:end]))
        return found

    def _sha_lines(self, sha: str) -> list[int]:
        """Offsets of the `"sha256"` lines holding `sha` (the hash may also occur inside a chunk's text)."""
        line = _SHA_LINE + sha.encode("ascii") + b'",\n'
        offsets, at = [], self._data.find(line)
        while at >= 0:
            offsets.append(at)
            at = self._data.find(line, at + len(line))
        return offsets

    def write_patched(self, paths: Collection[str], chunks: Sequence[dict[str, Any]]) -> None:
        """Replace the chunks of `paths` by `chunks` (all of them in those files, in line order) and write
        the file: what `write_chunks` would write for the patched list."""
        rescanned = set(paths)
        by_path: dict[str, list[dict[str, Any]]] = {}
        for chunk in chunks:
            by_path.setdefault(chunk["path"], []).append(chunk)
        if not set(by_path) <= rescanned:
            raise ValueError("chunks of a path that is not replaced")
        if not rescanned:
            return  # nothing changes
        if self._entries is None:
            try:
                atomic_write_bytes(self.path, self._patched(sorted(rescanned), by_path))
                return
            except _Layout:
                self._entries = json.loads(self._data)
        entries = [e for e in self._entries if e["path"] not in rescanned] + list(chunks)
        entries.sort(key=lambda e: e["path"])  # stable: each file's chunks stay in line order
        atomic_write_json(self.path, entries)

    def _patched(self, paths: list[str], by_path: dict[str, list[dict[str, Any]]]) -> list[bytes | memoryview]:
        """The patched file: chunks are joined by ",\\n" between "[\\n" and "\\n]\\n"."""
        data, view = self._data, memoryview(self._data)
        first, end = 2, len(data) - 3
        pieces: list[bytes | memoryview] = []
        cursor = first

        def keep(upto: int) -> None:  # the unchanged chunks from the cursor up to the chunk starting at `upto`
            if upto > cursor:
                pieces.append(view[cursor : upto if upto == end else upto - 2])

        for path in paths:  # sorted, like the chunks in the file: each search starts where the last ended
            lo = self._search(path, cursor, end, after=False)
            hi = self._search(path, lo, end, after=True)
            keep(lo)
            if path in by_path:
                text = json.dumps(by_path[path], ensure_ascii=False, indent=2)  # "[\n" chunks "\n]"
                pieces.append(text[2:-2].encode("utf-8"))
            cursor = hi
        keep(end)
        if not pieces:
            return [b"[]\n"]
        joined: list[bytes | memoryview] = [b"[\n"]
        for i, piece in enumerate(pieces):
            joined.extend((b",\n", piece) if i else (piece,))
        joined.append(b"\n]\n")
        return joined

    def _search(self, path: str, lo: int, end: int, *, after: bool) -> int:
        """The offset of the first chunk at or after `lo` whose path is >= `path` (> with `after`), else `end`."""
        hi = end
        while lo < hi:
            mid = (lo + hi) // 2
            start = self._next_start(mid, end)
            if start == end or (self._path_at(start) > path if after else self._path_at(start) >= path):
                hi = mid
            else:
                lo = start + 1  # every chunk starting before `start` sorts before it
        return self._next_start(lo, end)

    def _next_start(self, offset: int, end: int) -> int:
        """The offset of the first chunk starting at or after `offset` (`end` when none does)."""
        found = self._data.find(_START, max(offset, 2) - 1, end)
        return end if found < 0 else found + 1

    def _path_at(self, start: int) -> str:
        match = _ELEMENT.match(self._data, start)
        if match is None:
            raise _Layout(start)
        return str(json.loads(match.group(1)))
