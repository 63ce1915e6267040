"""Real git repositories for tests, made with pygit2 (never mocked)."""

from __future__ import annotations

import time
from pathlib import Path

import pygit2

_AUTHOR = pygit2.Signature("Test Author", "author@example.com", 1_700_000_000, 0)


def make_repo(path: Path, files: dict[str, str | bytes] | None = None, message: str = "initial") -> pygit2.Repository:
    """Create a repository at `path`; commit `files` (relative path -> content) if given."""
    path.mkdir(parents=True, exist_ok=True)
    repo = pygit2.init_repository(str(path), initial_head="main")
    if files:
        commit_files(repo, files, message=message)
    return repo


def commit_files(
    repo: pygit2.Repository,
    files: dict[str, str | bytes] | None = None,
    *,
    delete: list[str] | tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
    message: str = "change",
) -> str:
    """Write, delete and rename files in the work tree, stage them and commit on HEAD. Returns the sha."""
    root = Path(repo.workdir)
    for old, new in (rename or {}).items():
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        (root / old).rename(root / new)
        repo.index.remove(old)
        repo.index.add(new)
    for rel, content in (files or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        repo.index.add(rel)
    for rel in delete:
        (root / rel).unlink()
        repo.index.remove(rel)
    repo.index.write()
    tree = repo.index.write_tree()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    # Distinct, increasing timestamps keep commit ids deterministic yet ordered.
    stamp = 1_700_000_000 + len(list(repo.walk(repo.head.target))) if parents else 1_700_000_000
    sig = pygit2.Signature("Test Author", "author@example.com", stamp, 0)
    oid = repo.create_commit("HEAD", sig, sig, message, tree, parents)
    return str(oid)
