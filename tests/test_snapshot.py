"""snapshot: a commit's files, chunks and skeleton, written out; the scan, chunk and skeleton commands."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from codefactory.config import load_config
from codefactory.gitrepo import GitRepo
from codefactory.snapshot import Workspace, take_snapshot
from tests.cli_runs import ROOT, codefactory
from tests.gitrepos import make_repo

_GENERATION_SIDE = ("rich", "codefactory.scene1", "codefactory.scene2", "codefactory.generate", "codefactory.quality",
                    "codefactory.judge", "codefactory.ui")


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
    ws = Workspace(GitRepo(repo), load_config(repo, environ={}), progress=False)
    read = {f.path for f in take_snapshot(ws).scan.files}
    assert read == {"shop/cart.py"}
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == sorted(read)


def test_a_snapshot_is_left_out_of_later_collections(tmp_path: Path) -> None:
    """It lives as long as the run: the first collection after it would otherwise walk all it made (bench/README.md)."""
    repo = tmp_path / "r"
    make_repo(repo, {f"shop/m{i}.py": f"def f{i}(items):\n    return sum(items) + {i}\n" for i in range(30)})
    ws = Workspace(GitRepo(repo), load_config(repo, environ={}), progress=False)
    gc.unfreeze()
    try:
        snapshot = take_snapshot(ws)
        assert len(snapshot.chunks) == 30
        assert gc.get_freeze_count() >= len(snapshot.chunks) + len(snapshot.skeleton.files)
        assert gc.isenabled()
    finally:
        gc.unfreeze()
