"""chunks.json patched in place gives the bytes of the whole patched list written afresh."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from codefactory.chunk_index import ChunkIndex
from codefactory.fileio import atomic_write_json

PATHS = ["a.py", "b/c.py", "b/d é.py", 'q"uote\\d.py', "z/\U0001f600.go", "zz.md"]


def chunk(path: str, n: int, text: str | None = None) -> dict[str, Any]:
    text = text if text is not None else f'def f{n}():\n    return "{path}" + "\U0001f600"  # {n}\n'
    return {"id": f"{path}::f{n}", "path": path, "language": "python", "kind": "function", "symbol": f"f{n}",
            "start_line": n, "end_line": n + 1, "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "tokens": 7, "text": text}


def written(path: Path, entries: list[dict[str, Any]]) -> bytes:
    """What pipeline.write_chunks writes for these chunks."""
    atomic_write_json(path, entries)
    return path.read_bytes()


def expected_after(old: list[dict[str, Any]], paths: set[str], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted([e for e in old if e["path"] not in paths] + new, key=lambda e: e["path"])


@pytest.mark.parametrize("seed", range(40))
def test_patch_gives_the_bytes_of_a_full_write(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    old = [chunk(p, n) for p in PATHS for n in range(rng.randint(0, 3))]
    if not old:
        old = [chunk("a.py", 1)]
    written(tmp_path / "chunks.json", old)
    paths = set(rng.sample([*PATHS, "new/file.py", "0first.py", "~last.py"], rng.randint(1, 4)))
    new = [chunk(p, n + 10) for p in sorted(paths) for n in range(rng.randint(0, 2))]

    index = ChunkIndex.read(tmp_path / "chunks.json")
    assert index is not None
    index.write_patched(paths, new)

    assert index._entries is None, "patched as bytes, not parsed whole"
    assert (tmp_path / "chunks.json").read_bytes() == written(tmp_path / "full.json", expected_after(old, paths, new))


def test_removing_every_chunk_leaves_an_empty_list(tmp_path: Path) -> None:
    old = [chunk("a.py", 1), chunk("a.py", 2), chunk("b.py", 1)]
    written(tmp_path / "chunks.json", old)
    index = ChunkIndex.read(tmp_path / "chunks.json")
    assert index is not None
    index.write_patched({"a.py", "b.py"}, [])
    assert json.loads((tmp_path / "chunks.json").read_text()) == []


def test_lookups_by_text_hash(tmp_path: Path) -> None:
    same = hashlib.sha256(b"same").hexdigest()
    old = [chunk("a.py", 1, "same"), chunk("b.py", 2), chunk('q"uote\\d.py', 3, "same"), chunk("c.py", 1),
           chunk("d.py", 1, f'SHA = "{same}"\n')]  # the hash inside a text is not that chunk's hash
    old += [chunk("e.py", n) for n in range(20)]
    written(tmp_path / "chunks.json", old)
    index = ChunkIndex.read(tmp_path / "chunks.json")
    assert index is not None
    assert index.with_sha({same}) == [old[0], old[2]]
    assert index.with_sha(set()) == []
    assert index.shas() == {e["sha256"] for e in old}
    many = {e["sha256"] for e in old[::2]} | {"0" * 64}  # more than a search each: one pass over the hash lines
    assert index.with_sha(many) == [e for e in old if e["sha256"] in many]


def test_another_layout_is_parsed_whole_and_written_as_write_chunks_would(tmp_path: Path) -> None:
    old = [chunk("b.py", 1), chunk("a.py", 1)]  # compact and out of order: not ours to patch byte-wise
    (tmp_path / "chunks.json").write_text(json.dumps(old))
    index = ChunkIndex.read(tmp_path / "chunks.json")
    assert index is not None and index.with_sha({old[0]["sha256"]}) == [old[0]]
    new = [chunk("c.py", 5)]
    index.write_patched({"c.py"}, new)
    assert (tmp_path / "chunks.json").read_bytes() == written(tmp_path / "full.json", expected_after(old, {"c.py"}, new))


def test_missing_or_not_a_list_is_no_index(tmp_path: Path) -> None:
    assert ChunkIndex.read(tmp_path / "chunks.json") is None
    (tmp_path / "chunks.json").write_text('{"not": "a list"}')
    assert ChunkIndex.read(tmp_path / "chunks.json") is None
