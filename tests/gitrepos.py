"""Real git repositories for tests, made with pygit2 (never mocked)."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2

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


def commit_links(
    repo: pygit2.Repository,
    symlinks: dict[str, str] | None = None,
    submodules: dict[str, str] | None = None,
    *,
    message: str = "links",
) -> str:
    """Commit real symlinks (path -> target, made with os.symlink) and submodule gitlinks
    (path -> pinned commit sha, mode 160000) on HEAD. Returns the sha."""
    root = Path(repo.workdir)
    for rel, target in (symlinks or {}).items():
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
        repo.index.add(rel)
    for rel, sha in (submodules or {}).items():
        # A gitlink has no blob: the index entry just pins a commit of another repository.
        repo.index.add(pygit2.IndexEntry(rel, pygit2.Oid(hex=sha), pygit2.enums.FileMode.COMMIT))
    return commit_files(repo, message=message)


def commit_tree(
    repo: pygit2.Repository,
    files: dict[str, str | bytes],
    *,
    parents: list[str] | tuple[str, ...] = (),
    ref: str | None = None,
    message: str = "tree",
    stamp: int = 1_700_000_000,
) -> str:
    """Commit exactly `files` (a whole tree, built in the object database) with the given parents,
    updating `ref` if given; the work tree and index are untouched. Returns the sha."""
    root: dict = {}
    for rel, content in files.items():
        *dirs, name = rel.split("/")
        node = root
        for part in dirs:
            node = node.setdefault(part, {})
        node[name] = content.encode("utf-8") if isinstance(content, str) else content

    def write(node: dict) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for name, value in node.items():
            if isinstance(value, dict):
                builder.insert(name, write(value), pygit2.enums.FileMode.TREE)
            else:
                builder.insert(name, repo.create_blob(value), pygit2.enums.FileMode.BLOB)
        return builder.write()

    sig = pygit2.Signature("Test Author", "author@example.com", stamp, 0)
    oids = [pygit2.Oid(hex=p) for p in parents]
    return str(repo.create_commit(ref, sig, sig, message, write(root), oids))
