"""The dataset store on disk: selective reads of the raw logs give what a full read filtered would."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import pytest

from codefactory.models import Sample
from codefactory.rawlog import RawLogIndex
from codefactory.store import DatasetStore


def sample(n: int, path: str, sha: str, **content: str) -> Sample:
    return Sample(
        id=f"s1-{n:016x}", scene="scene1",
        content={"question": content.get("question", f"What does f{n} do?"), "thinking_trace": "1. reads it",
                 "answer": content.get("answer", "It returns.")},
        source={"repo": "r", "commit": "c" * 40, "path": path, "symbol": f"f{n}", "start_line": 1, "end_line": 2,
                "language": "python", "chunk_id": f"{path}::f{n}", "chunk_sha256": sha},
        generation={"backend": "openai", "model": "m", "cache_key": f"k{n}"},
        input=content.get("input_path") and {"path": content["input_path"]} or {},
    )


def logged(tmp_path: Path, samples: list[Sample]) -> DatasetStore:
    store = DatasetStore(tmp_path)
    store.append_raw(samples)
    return store


def test_read_by_source_fields_matches_a_filtered_full_read(tmp_path: Path) -> None:
    samples = [
        sample(1, "pkg/a.py", "a" * 64),
        sample(2, "pkg/b.py", "b" * 64),
        sample(3, "pkg/c.py", "a" * 64),  # same text as 1, elsewhere
        # The wanted path only in the text and in a nested field of the same name: not the provenance.
        sample(4, "pkg/d.py", "d" * 64, question='What does "path":"pkg/a.py" mean?', input_path="pkg/a.py"),
        sample(5, 'odd "quoted"\\path.py', "e" * 64),  # escapes in the value: parsed to decide
        sample(6, "pkgé/ü.py", "f" * 64),  # written as is (ensure_ascii=False)
    ]
    store = logged(tmp_path, samples)
    wanted = {"path": {"pkg/a.py", 'odd "quoted"\\path.py', "pkgé/ü.py"}, "chunk_sha256": {"a" * 64}}

    got = store.read_raw("scene1", sources=wanted)

    everything = store.read_raw("scene1")
    expected = {i for i, s in everything.items()
                if s.source["path"] in wanted["path"] or s.source["chunk_sha256"] in wanted["chunk_sha256"]}
    assert set(got) == expected == {samples[i].id for i in (0, 2, 4, 5)}
    assert got[samples[0].id] == samples[0]


def test_ids_and_source_fields_add_up(tmp_path: Path) -> None:
    samples = [sample(n, f"m{n}.py", f"{n:064x}") for n in range(1, 6)]
    store = logged(tmp_path, samples)

    got = store.read_raw("scene1", ids={samples[0].id}, sources={"path": {"m3.py"}, "chunk_sha256": set()})

    assert set(got) == {samples[0].id, samples[2].id}
    assert store.read_raw("scene1", ids=set(), sources={"path": set()}) == {}


def test_live_samples_follow_the_changelog_and_can_be_asked_for_a_few(tmp_path: Path) -> None:
    samples = [sample(n, f"m{n}.py", f"{n:064x}") for n in range(1, 5)]
    store = logged(tmp_path, samples)
    a, b, c, d = (s.id for s in samples)
    store.commit_version(from_commit=None, to_commit="c1", added=[c, a, b], retired=[])
    moved = {**samples[0].source, "path": "moved/m1.py", "commit": "c2"}
    store.commit_version(from_commit="c1", to_commit="c2", added=[d], retired=[b], moved={a: moved})

    everything = store.live_samples()

    assert [(s.id, v) for s, v in everything] == [(c, 1), (a, 1), (d, 2)], "order of addition, retired left out"
    assert everything[1][0].source == moved, "current provenance"
    assert [(s.id, v) for s, v in store.live_samples(ids={d, b, "s1-unknown"})] == [(d, 2)]
    assert [s for s, _ in store.live_samples(ids={a})] == [everything[1][0]]


def _view(store: DatasetStore) -> tuple:
    """What a store's raw-log index answers."""
    return (dict(store.raw_checksums("scene1")), store.read_raw("scene1", sources={"path": {"m2.py", "m7.py"}}),
            store.read_raw("scene1", ids={f"s1-{3:016x}"}))


def test_a_kept_raw_log_index_is_taken_up_only_by_a_log_that_starts_with_what_it_indexed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    indexed: list[bytes] = []  # the lines indexed from the log itself
    add = RawLogIndex._add
    monkeypatch.setattr(RawLogIndex, "_add", lambda self, line, offset: indexed.append(line) or add(self, line, offset))
    kept = tmp_path / "kept"
    first = DatasetStore(tmp_path / "a", index_dir=kept)
    first.append_raw([sample(n, f"m{n}.py", f"{n:064x}") for n in range(1, 6)])
    before = _view(first)
    assert not kept.exists()  # kept only when asked: a run that appends reply by reply would rewrite it each time
    first.keep_indexes()
    assert list(kept.iterdir())
    indexed.clear()
    again = DatasetStore(tmp_path / "a", index_dir=kept)
    assert _view(again) == before
    assert indexed == []  # taken up, not indexed again
    assert before == _view(DatasetStore(tmp_path / "a"))

    # The log grew: the kept part is taken up and only the new lines are indexed.
    DatasetStore(tmp_path / "a").append_raw([sample(n, f"m{n}.py", f"{n:064x}") for n in range(6, 9)])
    indexed.clear()
    grown = DatasetStore(tmp_path / "a", index_dir=kept)
    assert f"s1-{7:016x}" in grown.raw_checksums("scene1") and len(indexed) == 3  # only the new lines
    assert _view(grown) == _view(DatasetStore(tmp_path / "a"))
    grown.keep_indexes()
    assert f"s1-{7:016x}" in grown.raw_checksums("scene1")

    # Rewritten in place with other bytes of the same length: the kept index no longer holds.
    log = tmp_path / "a" / "scene1_raw.jsonl"
    log.write_text(log.read_text().replace("m2.py", "m9.py"))
    rewritten = DatasetStore(tmp_path / "a", index_dir=kept)
    assert _view(rewritten) == _view(DatasetStore(tmp_path / "a"))
    assert rewritten.read_raw("scene1", sources={"path": {"m2.py"}}) == {}
    rewritten.keep_indexes()

    # A log as `keep` saw it, settled on disk, is taken up without reading it again; one written just before
    # `keep` is checked by its crc, since a later write could leave its modification time the same.
    checked: list[int] = []
    crc32 = zlib.crc32
    monkeypatch.setattr(zlib, "crc32", lambda data, *start: checked.append(len(data)) or crc32(data, *start))
    DatasetStore(tmp_path / "a", index_dir=kept).raw_checksums("scene1")
    assert checked == [log.stat().st_size]
    past = time.time() - 10
    os.utime(log, (past, past))
    settled = DatasetStore(tmp_path / "a", index_dir=kept)
    settled.raw_checksums("scene1")
    settled.keep_indexes()
    checked.clear()
    assert _view(DatasetStore(tmp_path / "a", index_dir=kept)) == _view(rewritten) and checked == []
    monkeypatch.setattr(zlib, "crc32", crc32)

    # A damaged kept file is indexed afresh.
    for path in kept.iterdir():
        path.write_bytes(b"\x00garbage")
    assert _view(DatasetStore(tmp_path / "a", index_dir=kept)) == _view(DatasetStore(tmp_path / "a"))
