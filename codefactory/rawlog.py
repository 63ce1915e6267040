"""Where each sample's line is in an append-only raw log, kept up to date as the log grows.

A small update of a large dataset reads samples by id or by provenance (the file or the chunk text they
came from). One pass over the log notes where each complete line is and which `path` and `chunk_sha256`
values it holds; later lookups read only the lines they need, and a log that has grown since is indexed
from where the last pass ended. A run makes several such lookups (its plan, the ids already logged, the
samples it supersedes, the SFT rebuild), so it pays for one pass instead of one per lookup.
"""

from __future__ import annotations

import io
import json
import marshal
import os
import sys
import time
import zlib
from collections.abc import Collection, Iterable, Iterator, KeysView, Mapping
from pathlib import Path

from codefactory.fileio import atomic_write_bytes

# The provenance fields lines can be found by. A line is indexed under every `"key":"value"` pair it holds at
# any depth, so a lookup may return more lines than asked for (the caller checks the record's own source)
# but never fewer: lines are written compact (fileio.dumps_line) and JSON escapes every quote in a value.
INDEXED = ("path", "chunk_sha256")
_MARKERS = {key: f'"{key}":"'.encode() for key in INDEXED}
_ID_PREFIX = '{"id":"'
_ID_PREFIX_BYTES = _ID_PREFIX.encode()
_KEPT_FORMAT = f"1/{marshal.version}/{sys.version_info[0]}.{sys.version_info[1]}"  # marshal is per Python
_SETTLED_NS = 100_000_000  # well over any file system's timestamp granularity (ext4, xfs: a clock tick)


class RawLogIndex:
    def __init__(self, path: Path, kept: Path | None = None) -> None:
        """`kept`: where the index is kept between runs (a cache file, never in the dataset), or None."""
        self.path = path
        self.kept = kept
        self._restored = kept is None
        self._reset(None)

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self._identity = identity  # (device, inode) of the file indexed: a replaced log is indexed afresh
        self._end = 0  # bytes of complete lines indexed so far
        self._crc = 0  # crc32 of those bytes: a kept index holds only for a log that starts with them
        self._at: dict[str, tuple[int, int]] = {}  # id -> (offset, length) of its latest line
        self._sums: dict[str, str] = {}  # id -> checksum of its latest line (see checksums)
        self._by: dict[str, dict[str, set[str]]] = {key: {} for key in INDEXED}
        self._unsure: set[str] = set()  # ids of lines with an escaped value: looked at by every lookup

    def ids(self) -> KeysView[str]:
        """The ids of the complete lines."""
        self._refresh()
        return self._at.keys()

    def find(self, sources: Mapping[str, Collection[str]]) -> set[str]:
        """Ids of the lines holding `"key":"value"` for one of `sources[key]`, among others (see INDEXED)."""
        unknown = set(sources) - set(INDEXED)
        if unknown:
            raise ValueError(f"raw lines are not indexed by {', '.join(sorted(unknown))}")
        self._refresh()
        found: set[str] = set()
        for key, values in sources.items():
            by_value = self._by[key]
            for value in values:
                found.update(by_value.get(value, ()))
        if any(sources.values()):
            found |= self._unsure
        return found

    def checksums(self) -> Mapping[str, str]:
        """id -> checksum of its latest line ("crc32:bytes"): what was derived from a line holds while this does,
        so a caller keeping such results need not read or parse the line again."""
        self._refresh()
        return self._sums

    def line(self, sample_id: str) -> str | None:
        """The latest line of this id, or None."""
        return next(self.lines([sample_id]), None)

    def lines(self, ids: Iterable[str]) -> Iterator[str]:
        """The latest line of each of these ids, in log order; unknown ids are left out."""
        self._refresh()
        spans = sorted(span for i in set(ids) if (span := self._at.get(i)) is not None)
        if not spans:
            return
        with open(self.path, "rb") as handle:
            if sum(length for _, length in spans) > self._end // 2:  # most of the log: one read, then slices
                data = memoryview(handle.read(self._end))
                for offset, length in spans:
                    yield str(data[offset : offset + length], "utf-8")
                return
            for offset, length in spans:
                handle.seek(offset)
                yield handle.read(length).decode("utf-8")

    def _refresh(self) -> None:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self._reset(None)
            return
        identity = (status.st_dev, status.st_ino)
        if not self._restored:
            self._restored = True
            self._restore(status)
        if identity != self._identity or status.st_size < self._end:
            self._reset(identity)
        if status.st_size > self._end:
            self._extend()

    def _extend(self) -> None:
        with open(self.path, "rb") as handle:
            handle.seek(self._end)
            self._take(handle)

    def appended(self, offset: int, data: bytes) -> None:
        """Lines this process has just appended at `offset` (what `fileio.append_jsonl` returns): indexed from
        the bytes written, not read back, when the index reached exactly there and the log holds nothing
        more; else the next lookup reads them. A run appends batch after batch while it generates, and
        reading each back was a sixth of its time when the LLM answers at once."""
        if not data or not self._restored or offset != self._end:
            return
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return
        identity = (status.st_dev, status.st_ino)
        if self._identity is None and offset == 0:  # the log this process has just started
            self._identity = identity
        if identity == self._identity and status.st_size == offset + len(data):
            self._take(io.BytesIO(data))  # its lines as iterating over the file gives them

    def _take(self, lines: Iterable[bytes]) -> None:
        """Index lines that follow the ones indexed so far."""
        offset, crc = self._end, self._crc
        for line in lines:
            if not line.endswith(b"\n"):
                break  # a write that never finished: indexed once a repaired log has it whole
            self._add(line, offset)
            offset += len(line)
            crc = zlib.crc32(line, crc)
        self._end, self._crc = offset, crc

    def _restore(self, status: os.stat_result) -> None:
        """Take up the index a previous run kept, if the log still starts with the bytes it indexed: checked by
        their crc (reading them again costs a fraction of indexing them), unless the file is exactly as `keep`
        saw it (same inode, size and modification time, as make and git judge files)."""
        assert self.kept is not None
        identity = (status.st_dev, status.st_ino)
        try:
            data = marshal.loads(self.kept.read_bytes())
            if data["format"] != _KEPT_FORMAT:
                return
            if data.get("stat") != _stamp(status):
                with open(self.path, "rb") as handle:
                    if zlib.crc32(handle.read(data["end"])) != data["crc"] or handle.tell() != data["end"]:
                        return
            self._identity, self._end, self._crc = identity, data["end"], data["crc"]
            self._at, self._sums, self._by, self._unsure = data["at"], data["sums"], data["by"], data["unsure"]
        except Exception:  # missing, damaged or another Python's marshal: indexed afresh  # noqa: BLE001
            self._reset(identity)

    def keep(self) -> None:
        """Write the index where `kept` says, for a later run (not on every extension: a run that appends reply
        by reply would rewrite it each time)."""
        if self.kept is None:
            return
        self._refresh()
        try:
            status = os.stat(self.path)
            # The file as seen now, when a later change must show in its modification time: a write within the
            # file system's timestamp granularity of the last one could leave it the same ("racy" files, as git
            # calls them), so a log written just now is checked by its crc next time.
            settled = status.st_size == self._end and time.time_ns() - status.st_mtime_ns > _SETTLED_NS
            self.kept.parent.mkdir(parents=True, exist_ok=True)
            state = {"format": _KEPT_FORMAT, "end": self._end, "crc": self._crc, "at": self._at,
                     "sums": self._sums, "by": self._by, "unsure": self._unsure,
                     "stat": _stamp(status) if settled else None}
            atomic_write_bytes(self.kept, [marshal.dumps(state)], durable=False)
        except (OSError, ValueError):
            pass  # a read-only checkout: the next run indexes again

    def _add(self, line: bytes, offset: int) -> None:
        sample_id = bytes_line_id(line)
        if sample_id is None:
            return  # blank, or not a record: no lookup can return it
        self._at[sample_id] = (offset, len(line))
        self._sums[sample_id] = f"{zlib.crc32(line):08x}:{len(line)}"
        if not line.startswith(_ID_PREFIX_BYTES):  # not written compact by us: the markers may not match
            self._unsure.add(sample_id)
            return
        for key, marker in _MARKERS.items():
            start = line.find(marker)
            while start >= 0:
                start += len(marker)
                end = line.find(b'"', start)
                value = line[start:end]
                if end < 0 or b"\\" in value:  # the quote found may be escaped: let the lookup parse the line
                    self._unsure.add(sample_id)
                    break
                self._by[key].setdefault(value.decode("utf-8"), set()).add(sample_id)
                start = line.find(marker, end)


def _stamp(status: os.stat_result) -> list[int]:
    """What tells a file from another or from itself changed: device, inode, size, modification time."""
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns]


def line_id(line: str) -> str | None:
    """A record's id without parsing the whole line (records are written with the id first)."""
    if line.startswith(_ID_PREFIX):
        end = line.find('"', len(_ID_PREFIX))
        if end > 0 and line.find("\\", len(_ID_PREFIX), end) < 0:
            return line[len(_ID_PREFIX) : end]
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("id") if isinstance(record, dict) else None


def bytes_line_id(line: bytes) -> str | None:
    """line_id of a line as bytes; the id is decoded alone when the line starts with it."""
    if line.startswith(_ID_PREFIX_BYTES):
        end = line.find(b'"', len(_ID_PREFIX_BYTES))
        if end > 0 and line.find(b"\\", len(_ID_PREFIX_BYTES), end) < 0:
            return line[len(_ID_PREFIX_BYTES) : end].decode("utf-8")
    if not line.strip():
        return None
    return line_id(line.decode("utf-8", errors="replace"))
