"""snapshot: a commit's files, chunks and skeleton, written out; the scan, chunk and skeleton commands."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from codefactory.config import load_config
from codefactory.gitrepo import GitRepo
from codefactory.snapshot import Workspace, take_snapshot
from tests.cli_runs import ROOT, codefactory
from tests.gitrepos import make_repo

_GENERATION_SIDE = ("rich", "codefactory.scene1", "codefactory.scene2", "codefactory.generate", "codefactory.quality",
                    "codefactory.judge", "codefactory.ui")


def _workspace(repo: Path) -> Workspace:
    return Workspace(GitRepo(repo), load_config(repo, environ={}), progress=False)


def _imported_after(module: str) -> set[str]:
    probe = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(loaded.stdout.split())


def test_the_snapshot_side_loads_none_of_the_generation_side() -> None:
    assert not _imported_after("codefactory.snapshot") & set(_GENERATION_SIDE), "scan, chunk and skeleton start lighter"
    assert set(_GENERATION_SIDE) <= _imported_after("codefactory.pipeline"), "the names above are the ones it loads"


def test_the_scan_command_lists_what_a_snapshot_reads(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    # codefactory's own output committed to the repository is never read back as source
    make_repo(repo, {"shop/cart.py": "def total(items):\n    return sum(items)\n",
                     "data/chunks.json": "[]\n", "data/helper.py": "def own():\n    return 1\n",
                     ".codefactory/notes.py": "def cached():\n    return 2\n"})
    listed = codefactory(repo, "scan")
    assert listed.returncode == 0, listed.stderr
    ws = _workspace(repo)
    read = {f.path for f in take_snapshot(ws).scan.files}
    assert read == {"shop/cart.py"}
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == sorted(read)


def test_a_snapshot_is_left_out_of_later_collections(tmp_path: Path) -> None:
    """It lives as long as the run: the first collection after it would otherwise walk all it made (bench/README.md)."""
    repo = tmp_path / "r"
    make_repo(repo, {f"shop/m{i}.py": f"def f{i}(items):\n    return sum(items) + {i}\n" for i in range(30)})
    ws = _workspace(repo)
    gc.unfreeze()
    try:
        snapshot = take_snapshot(ws)
        assert len(snapshot.chunks) == 30
        assert gc.get_freeze_count() >= len(snapshot.chunks) + len(snapshot.skeleton.files)
        assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_the_chunk_and_skeleton_commands_do_only_their_part_and_write_what_a_snapshot_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codefactory import analyze
    from codefactory.snapshot import take_chunks, take_skeleton, write_chunks, write_skeleton

    repo = tmp_path / "r"
    make_repo(repo, {"shop/cart.py": "import shop.tax\n\nclass Cart:\n    def total(self, items):\n        return sum(items)\n",
                     "shop/tax.py": "RATE = 0.2\n\ndef tax(amount):\n    return amount * RATE\n",
                     "README.md": "# shop\n\nA cart and its tax.\n"})
    ws = _workspace(repo)
    whole = take_snapshot(ws)
    written = {p.name: p.read_bytes() for p in [write_chunks(ws, whole.chunks), *write_skeleton(ws, whole.skeleton)]}
    assert whole.chunks and whole.skeleton.files

    def never(*_: object, **__: object) -> None:
        raise AssertionError("work the command does not need")

    monkeypatch.setattr(analyze, "extract_symbols", never)
    monkeypatch.setattr(analyze, "file_refs", never)
    _, chunks = take_chunks(ws)
    assert write_chunks(ws, chunks).read_bytes() == written["chunks.json"]
    monkeypatch.undo()
    monkeypatch.setattr(analyze, "chunk_file", never)
    _, skeleton = take_skeleton(ws)
    assert {p.name: p.read_bytes() for p in write_skeleton(ws, skeleton)} == {
        name: data for name, data in written.items() if name != "chunks.json"}
