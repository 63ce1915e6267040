"""The raw-log index finds lines by id and provenance as the log grows, is torn and repaired, or replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codefactory.fileio import append_jsonl
from codefactory.rawlog import RawLogIndex


def record(n: int, path: str, sha: str = "", **extra: object) -> dict[str, object]:
    return {"id": f"s1-{n}", "scene": "scene1", "question": f"q{n}",
            "source": {"path": path, "chunk_sha256": sha or f"{n:064x}"}, **extra}


def test_lines_by_id_and_by_provenance_as_the_log_grows(tmp_path: Path) -> None:
    log = tmp_path / "scene1_raw.jsonl"
    index = RawLogIndex(log)
    assert not index.ids() and list(index.lines(["s1-1"])) == []

    append_jsonl(log, [record(1, "a.py"), record(2, "b.py"), record(3, "a.py", sha="f" * 64)])
    assert set(index.ids()) == {"s1-1", "s1-2", "s1-3"}
    assert index.find({"path": {"a.py"}}) == {"s1-1", "s1-3"}
    assert index.find({"chunk_sha256": {"f" * 64}, "path": {"b.py"}}) == {"s1-2", "s1-3"}

    append_jsonl(log, [record(4, "a.py")])  # only the new bytes are indexed, and found
    assert index.find({"path": {"a.py"}}) == {"s1-1", "s1-3", "s1-4"}
    assert [json.loads(line)["id"] for line in index.lines(["s1-4", "s1-2", "nope"])] == ["s1-2", "s1-4"]


def test_a_torn_line_is_left_out_until_the_log_is_repaired(tmp_path: Path) -> None:
    log = tmp_path / "scene1_raw.jsonl"
    append_jsonl(log, [record(1, "a.py")])
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record(2, "a.py"))[:30])  # a killed writer's half line
    index = RawLogIndex(log)
    assert set(index.ids()) == {"s1-1"}

    append_jsonl(log, [record(3, "a.py")])  # cuts the torn line off first, then appends
    assert set(index.ids()) == {"s1-1", "s1-3"}
    assert [json.loads(line)["id"] for line in index.lines(index.find({"path": {"a.py"}}))] == ["s1-1", "s1-3"]


def test_a_replaced_log_is_indexed_afresh(tmp_path: Path) -> None:
    log = tmp_path / "scene1_raw.jsonl"
    append_jsonl(log, [record(1, "a.py"), record(2, "b.py")])
    index = RawLogIndex(log)
    assert set(index.ids()) == {"s1-1", "s1-2"}
    replacement = tmp_path / "new.jsonl"
    append_jsonl(replacement, [record(7, "c.py"), record(8, "d.py"), record(9, "e.py")])
    replacement.replace(log)
    assert set(index.ids()) == {"s1-7", "s1-8", "s1-9"}
    assert index.find({"path": {"a.py"}}) == set()
    log.unlink()
    assert not index.ids()


def test_nested_and_escaped_values_are_found_too(tmp_path: Path) -> None:
    """A lookup may return more lines than asked for, never fewer: the caller checks the record's source."""
    log = tmp_path / "scene1_raw.jsonl"
    append_jsonl(log, [record(1, "b.py", input={"path": "a.py"}), record(2, 'q"uote.py'), record(3, "c.py")])
    index = RawLogIndex(log)
    assert index.find({"path": {"a.py"}}) == {"s1-1", "s1-2"}
    assert index.find({"path": set()}) == set()
    with pytest.raises(ValueError):
        index.find({"symbol": {"f"}})

    with open(log, "a", encoding="utf-8") as handle:  # written by another tool, with spaces
        handle.write(json.dumps(record(4, "d.py")) + "\n")
    assert index.find({"path": {"a.py"}}) == {"s1-1", "s1-2", "s1-4"}


def test_lines_a_process_appends_are_indexed_from_what_it_wrote(tmp_path: Path) -> None:
    """`appended` takes up the bytes written without reading them back: the same index as reading the log,
    and a log that holds more than this process wrote (another writer) is read as before."""
    log = tmp_path / "scene1_raw.jsonl"
    index = RawLogIndex(log)
    assert not index.ids()
    index.appended(*append_jsonl(log, [record(1, "a.py"), record(2, 'q"uote.py')]))
    assert index._end == log.stat().st_size, "taken up without a read"
    index.appended(*append_jsonl(log, [record(3, "a.py", input={"path": "é.py"})]))
    with open(log, "a", encoding="utf-8") as handle:  # another writer
        handle.write(json.dumps(record(4, "d.py")) + "\n")
    index.appended(*append_jsonl(log, [record(5, "a.py")]))  # not where the index ended: read at the next lookup
    fresh = RawLogIndex(log)
    assert set(index.ids()) == set(fresh.ids()) == {"s1-1", "s1-2", "s1-3", "s1-4", "s1-5"}
    assert dict(index.checksums()) == dict(fresh.checksums())
    for paths in ({"a.py"}, {"é.py"}, {"d.py"}, {'q"uote.py'}):
        assert index.find({"path": paths}) == fresh.find({"path": paths})
    assert [json.loads(line)["id"] for line in index.lines(["s1-5", "s1-3"])] == ["s1-3", "s1-5"]
