"""The repository index (grounding.py) of recent commits, kept between runs for quality assessment.

A commit's index is kept as an `IndexSummary` (how many files hold each name, every file's definitions), and
each file's `FileEntry` by its content in an `EntryStore`. A run that scanned the whole tree builds it from
its own scan; an incremental run, which rescans only the changed files, patches the base commit's summary
with them, taking out the old entries of those files. Only when neither is possible is the tree scanned
again. Like quality_cache.py's files, these are caches: anything missing or unreadable is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import re
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from codefactory import __version__
from codefactory.fileio import atomic_write_bytes
from codefactory.grounding import Definition, FileEntry, RepoIndex, by_name, file_entry, path_names
from codefactory.models import SourceFile
from codefactory.quality_cache import FORMAT, STAMP, quality_cache_dir, read_marshal
from codefactory.skeleton import FileSymbols, extract_symbols

if TYPE_CHECKING:
    from codefactory.snapshot import Snapshot, Workspace

INDEX_DIR = "index"  # one summary per recent commit: index/<commit>.marshal
ENTRIES_DIR = "entries"  # per-file entries by content, shared by every commit (diskcache)
_KEEP_COMMITS = 4  # summaries kept: a branch and its base, with room to spare
# Bump when what a summary holds changes apart from quality_cache's FORMAT (2: escaped definition names;
# 3: names and counts as a sorted string and an array).
_SUMMARY_FORMAT = 3


def scan_key(ws: "Workspace") -> str:
    """What decides which files the index holds and what it takes from them, besides the commit."""
    options = ws.scan_options
    payload = [FORMAT, __version__, options["include"], options["exclude"], options["max_file_bytes"]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def entries_of(files: Sequence[SourceFile], symbols: Mapping[str, FileSymbols] | None = None) -> dict[str, FileEntry]:
    """Index entries of scanned files. `symbols`: a whole skeleton's files, which leave out exactly the files
    without symbols (parsing those again in this process would cost what the workers already paid)."""
    entries = {}
    for f in files:
        found = (symbols[f.path].symbols if f.path in symbols else []) if symbols is not None \
            else extract_symbols(f).symbols
        entries[f.path] = file_entry(f, [(s.name, s.kind) for s in found])
    return entries


def scan_entries(ws: "Workspace", commit: str, paths: Collection[str] | None = None) -> dict[str, FileEntry]:
    """Entries from a scan of the tree at `commit` (with redaction, as the pipeline does), or of `paths` in it."""
    return entries_of(ws.scan(commit, paths=paths).files)


def entry_key(file: SourceFile) -> str:
    """What a file's entry is a function of (under one scan key): its language and its content."""
    content = file.blob_sha or hashlib.sha1(file.text.encode("utf-8")).hexdigest()
    return f"{file.language}:{content}"


class EntryStore:
    """Per-file index entries by `entry_key`, kept across commits: a commit that changes one file adds one."""

    def __init__(self, ws: "Workspace") -> None:
        self.directory = quality_cache_dir(ws) / ENTRIES_DIR / scan_key(ws)[:16]
        self._cache: Any = None

    def _open(self) -> Any:
        if self._cache is None:
            import diskcache

            self._cache = diskcache.Cache(str(self.directory))
        return self._cache

    def get(self, key: str) -> FileEntry | None:
        try:
            found = self._open().get(key)
            if found is None:
                return None
            tokens, names, definitions = found
            return FileEntry(frozenset(tokens), frozenset(names), tuple((q, k) for q, k in definitions))
        except Exception:  # damaged or foreign: the caller rebuilds what it needs  # noqa: BLE001
            return None

    def put_many(self, entries: Mapping[str, FileEntry]) -> None:
        try:
            cache = self._open()
            with cache.transact():
                for key, entry in entries.items():
                    cache.set(key, (sorted(entry.tokens), sorted(entry.names), [list(d) for d in entry.definitions]))
        except Exception:  # a read-only checkout: the next run recomputes  # noqa: BLE001
            pass

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None


def _file_tokens(path: str, entry: FileEntry) -> set[str]:
    return {*entry.tokens, *path_names(path)}  # a file's path names things too (RepoIndex.from_entries)


@dataclass
class IndexSummary:
    """A commit's repository index in the form that loads fast and patches in O(changed files): how many files
    hold each name rather than each file's names, which stay in the EntryStore until a change needs them."""

    files: dict[str, str]  # path -> entry key
    # Every name some file holds, in its text or its path, sorted, and how many files hold it: two flat
    # sequences rather than a dict, as a summary is read on every run (one string and one array of counts
    # load in a fraction of the time of a dict of ~200k names, and only the names a commit touches are looked
    # up, by bisection).
    names: list[str]
    counts: array[int]  # array("I"), parallel to names
    # path -> its definitions as "qualified\tkind" lines, in source order: one string a file, so a load
    # creates no object per definition (only Scene-2 checks read them).
    definitions: dict[str, str]

    @classmethod
    def of(cls, entries: Mapping[str, tuple[str, FileEntry]]) -> "IndexSummary":
        counts: Counter[str] = Counter()
        for path, (_, entry) in entries.items():
            counts.update(_file_tokens(path, entry))
        names = sorted(counts)
        return cls({p: key for p, (key, _) in entries.items()}, names, array("I", [counts[n] for n in names]),
                   {p: _packed(e.definitions) for p, (_, e) in entries.items() if e.definitions})

    def patched(self, rescanned: Collection[str], new: Mapping[str, tuple[str, FileEntry]],
                entry_of: Callable[[str], FileEntry | None]) -> "IndexSummary | None":
        """This summary with the `rescanned` paths replaced by `new` (a path absent from it is gone), or None
        when an old entry to take out is no longer kept."""
        change: Counter[str] = Counter()
        files = dict(self.files)
        definitions = dict(self.definitions)
        for path in rescanned:
            definitions.pop(path, None)
            if path in files:
                old = entry_of(files.pop(path))
                if old is None:
                    return None
                change.subtract(_file_tokens(path, old))
        for path, (key, entry) in new.items():
            files[path] = key
            change.update(_file_tokens(path, entry))
            if entry.definitions:
                definitions[path] = _packed(entry.definitions)
        counted = _counted(self.names, self.counts, change)
        return None if counted is None else IndexSummary(files, *counted, definitions)

    def index(self, names_of: Callable[[str], frozenset[str]]) -> RepoIndex:
        """The RepoIndex of this commit; `names_of(path)` gives one file's names, asked for only by Scene-2."""

        def definitions() -> dict[str, list[Definition]]:
            return by_name(d for path in sorted(self.definitions)  # path order, as RepoIndex.from_entries
                           for d in _unpacked(path, self.definitions[path]))

        return RepoIndex(frozenset(self.names), frozenset(self.files), _Deferred(definitions),
                         _PerPath(self.files, names_of))

    def to_json(self) -> dict[str, Any]:
        # Names are identifiers (grounding._IDENT): a newline never occurs in one.
        return {"files": self.files, "names": "\n".join(self.names), "counts": self.counts.tobytes(),
                "definitions": self.definitions}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "IndexSummary":
        counts = array("I")
        counts.frombytes(data["counts"])
        names = data["names"].split("\n") if data["names"] else []
        if len(names) != len(counts):
            raise ValueError("a summary's names and counts differ in length")
        return cls(data["files"], names, counts, data["definitions"])


# Beyond this many names to add or drop, a patch rebuilds the sorted sequences instead of shifting them.
_FEW_NAMES = 256


def _counted(names: list[str], counts: array[int],
             change: Mapping[str, int]) -> tuple[list[str], array[int]] | None:
    """`names` and `counts` with `change` added to the counts; names whose count falls to 0 are dropped.
    None when a count would fall below 0 (the summary does not hold what a file's old entry says)."""
    names, counts = list(names), array("I", counts)
    moved = []  # names to add or drop, which shift every position after theirs
    for name, step in change.items():
        if not step:
            continue
        at = bisect_left(names, name)
        present = at < len(names) and names[at] == name
        total = (counts[at] if present else 0) + step
        if total < 0:
            return None
        if present and total > 0:
            counts[at] = total
        else:
            moved.append((name, total))
    if len(moved) > _FEW_NAMES:
        merged = dict(zip(names, counts))
        merged.update(moved)
        kept = sorted(name for name, count in merged.items() if count)
        return kept, array("I", [merged[name] for name in kept])
    for name, total in moved:
        at = bisect_left(names, name)
        if total:
            names.insert(at, name)
            counts.insert(at, total)
        else:
            del names[at]
            del counts[at]
    return names, counts


# A qualified name keeps what the source wrote, tabs and newlines included (TypeScript's `namespace A.\n  B`,
# `declare module "x<tab>y"`): escaped in a summary's "qualified\tkind" lines, whose kinds never hold either.
_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n"})
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n"}


def _packed(definitions: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{qualified.translate(_ESCAPE)}\t{kind}" for qualified, kind in definitions)


def _unpacked(path: str, packed: str) -> Iterator[Definition]:
    """The definitions of `path` from its `_packed` lines."""
    for line in packed.split("\n"):
        qualified, kind = line.split("\t")
        if "\\" in qualified:
            qualified = _ESCAPED.sub(lambda m: _UNESCAPE[m[1]], qualified)
        yield Definition(qualified, kind, path)


class _Deferred(Mapping[str, list[Definition]]):
    """A mapping built on first use: only Scene-2 checks ask for definitions."""

    def __init__(self, build: Callable[[], dict[str, list[Definition]]]) -> None:
        self._build = build
        self._built: dict[str, list[Definition]] | None = None

    def _data(self) -> dict[str, list[Definition]]:
        if self._built is None:
            self._built = self._build()
        return self._built

    def __getitem__(self, key: str) -> list[Definition]:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


class _PerPath(Mapping[str, frozenset[str]]):
    """Each file's names, read from the entry store when first asked for."""

    def __init__(self, files: Mapping[str, str], names_of: Callable[[str], frozenset[str]]) -> None:
        self._files = files
        self._names_of = names_of
        self._read: dict[str, frozenset[str]] = {}

    def __getitem__(self, path: str) -> frozenset[str]:
        if path not in self._files:
            raise KeyError(path)
        if path not in self._read:
            self._read[path] = self._names_of(path)
        return self._read[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


class SummaryStore:
    """The summaries of the last few commits, under `.codefactory/quality/index/`."""

    def __init__(self, ws: "Workspace") -> None:
        self.directory = quality_cache_dir(ws) / INDEX_DIR
        self.key = f"{scan_key(ws)}/{_SUMMARY_FORMAT}"  # summaries packed otherwise are not read

    def path(self, commit: str) -> Path:
        return self.directory / f"{commit}.marshal"

    def load(self, commit: str) -> IndexSummary | None:
        try:
            data = read_marshal(self.path(commit))
            if data.get("format") != STAMP or data.get("key") != self.key:
                return None
            return IndexSummary.from_json(data)
        except Exception:  # missing or damaged (marshal raises several kinds): recomputed  # noqa: BLE001
            return None

    def save(self, commit: str, summary: IndexSummary) -> None:
        try:
            # One C-encoded string: names are ASCII identifiers, so no wide-string blow-up (fileio.py).
            atomic_write_bytes(self.path(commit), [marshal.dumps({"format": STAMP, "key": self.key,
                                                                 **summary.to_json()})], durable=False)
            kept = sorted(self.directory.glob("*.marshal"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in [*kept[_KEEP_COMMITS:], *self.directory.glob("*.json")]:  # *.json: format 2's
                old.unlink(missing_ok=True)
            (self.directory.parent / "index.json").unlink(missing_ok=True)  # format 1's single index
        except OSError:
            pass  # a read-only checkout: the next run recomputes


def index_summary(ws: "Workspace", commit: str, entries: EntryStore, snapshot: "Snapshot | None" = None,
                  base: str | None = None) -> IndexSummary:
    """The index summary of the tree at `commit`, from the cheapest source that gives exactly it.

    `snapshot` is what the run scanned at `commit`: the whole tree (`rescanned` None), or, for an incremental
    run from `base`, only the paths in `snapshot.rescanned` (each either in `snapshot.scan.files` or gone);
    every other path is as it was at `base`, which is what lets the base's summary be patched.
    """
    store = SummaryStore(ws)
    summary = store.load(commit)
    if summary is not None:
        return summary
    if snapshot is not None and snapshot.commit == commit and snapshot.rescanned is None:
        found = _keyed(snapshot.scan.files, entries_of(snapshot.scan.files, {s.path: s for s in snapshot.skeleton.files}))
        entries.put_many(dict(found.values()))
        summary = IndexSummary.of(found)
    elif snapshot is not None and snapshot.commit == commit and base is not None \
            and (previous := store.load(base)) is not None:
        rescanned = snapshot.rescanned or frozenset()
        changed = [f for f in snapshot.scan.files if f.path in rescanned]
        found = _keyed(changed, entries_of(changed))
        entries.put_many(dict(found.values()))
        summary = previous.patched(rescanned, found, entries.get)
    if summary is None:
        result = ws.scan(commit)
        found = _keyed(result.files, entries_of(result.files))
        entries.put_many(dict(found.values()))
        summary = IndexSummary.of(found)
    store.save(commit, summary)
    return summary


def _keyed(files: Sequence[SourceFile], entries: Mapping[str, FileEntry]) -> dict[str, tuple[str, FileEntry]]:
    return {f.path: (entry_key(f), entries[f.path]) for f in files}


# The last indexes built in this process: a run asks for it up to three times (judge, rebuild, report).
# Safe to keep: an index is a pure function of the commit and the scan settings that key it.
_MEMO: dict[tuple[str, str, str], RepoIndex] = {}


def repo_index_at(ws: "Workspace", commit: str, snapshot: "Snapshot | None" = None,
                  base: str | None = None) -> RepoIndex:
    memo_key = (str(quality_cache_dir(ws)), scan_key(ws), commit)
    index = _MEMO.get(memo_key)
    if index is None:
        entries = EntryStore(ws)
        summary = index_summary(ws, commit, entries, snapshot, base)

        def names_of(path: str) -> frozenset[str]:
            entry = entries.get(summary.files[path])
            if entry is None:  # no longer kept: that one file is scanned again
                entry = scan_entries(ws, commit, [path])[path]
            simple = {q.rsplit(".", 1)[-1] for q, _ in entry.definitions}
            return frozenset({PurePosixPath(path).stem, *entry.names, *simple})

        index = summary.index(names_of)
        while len(_MEMO) >= 2:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[memo_key] = index
    return index
