"""GitRepo against real repositories built with pygit2."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from codefactory.errors import RepositoryError, RevisionError
from codefactory.gitrepo import FileChange, GitRepo, TreeEntry
from tests.gitrepos import commit_files, commit_links, commit_tree, make_repo

_SIG = pygit2.Signature("Test Author", "author@example.com", 1_700_000_500, 0)


def test_opens_from_a_subdirectory(tmp_path: Path) -> None:
    make_repo(tmp_path / "proj", {"pkg/mod.py": "x = 1\n"})
    repo = GitRepo(tmp_path / "proj" / "pkg")
    assert repo.root == (tmp_path / "proj").resolve()
    assert repo.name == "proj"
    assert repo.is_shallow is False


def test_not_a_repository_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError) as info:
        GitRepo(tmp_path)
    message = str(info.value)
    assert "is not a git repository" in message
    assert "git init" in message and "--repo" in message
    assert "\n" not in message


def test_missing_path_is_a_repository_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        GitRepo(tmp_path / "nowhere")


def test_bare_repository_is_rejected(tmp_path: Path) -> None:
    pygit2.init_repository(str(tmp_path / "bare.git"), bare=True)
    with pytest.raises(RepositoryError, match="bare repository"):
        GitRepo(tmp_path / "bare.git")


def test_empty_repository_has_no_head_commit(tmp_path: Path) -> None:
    make_repo(tmp_path)
    repo = GitRepo(tmp_path)
    assert repo.head_commit() is None
    with pytest.raises(RepositoryError, match="no commits yet"):
        repo.resolve("HEAD")
    assert repo.commit_exists("HEAD") is False


def test_resolve_branches_tags_prefixes_and_relative_revisions(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"a.py": "a = 1\n"})
    first = str(raw.head.target)
    second = commit_files(raw, {"a.py": "a = 2\n"})
    raw.create_tag("v1", pygit2.Oid(hex=first), pygit2.enums.ObjectType.COMMIT, _SIG, "release 1")
    raw.create_reference("refs/tags/light", pygit2.Oid(hex=first))
    repo = GitRepo(tmp_path)

    assert repo.head_commit() == second
    assert repo.resolve("HEAD") == second
    assert repo.resolve("main") == second
    assert repo.resolve("HEAD~1") == first
    assert repo.resolve("v1") == first  # annotated tag peeled to its commit
    assert repo.resolve("light") == first
    assert repo.resolve(second[:10]) == second
    assert repo.commit_exists(first) is True


def test_unknown_revision_is_a_one_line_error(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "a = 1\n"})
    repo = GitRepo(tmp_path)
    with pytest.raises(RevisionError) as info:
        repo.resolve("xyz")
    assert str(info.value) == "unknown revision 'xyz'"
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(RevisionError, match="unknown revision 'a..b'"):
        repo.resolve("a..b")
    assert repo.commit_exists("0" * 40) is False
    assert repo.commit_exists("not a sha") is False


def test_a_blob_is_not_a_commit(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"a.py": "a = 1\n"})
    blob = str(raw.create_blob(b"loose\n"))
    with pytest.raises(RevisionError, match="does not name a commit"):
        GitRepo(tmp_path).resolve(blob)


def test_detached_head(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"a.py": "a = 1\n"})
    first = str(raw.head.target)
    commit_files(raw, {"a.py": "a = 2\n"})
    raw.set_head(pygit2.Oid(hex=first))
    assert raw.head_is_detached
    repo = GitRepo(tmp_path)
    assert repo.head_commit() == first
    assert repo.resolve("HEAD") == first
    assert [e.path for e in repo.list_files("HEAD")] == ["a.py"]


def test_ancestry_and_merge_base(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"a.py": "a = 1\n"})
    base = str(raw.head.target)
    main = commit_files(raw, {"a.py": "a = 2\n"})
    side = commit_tree(raw, {"a.py": "a = 3\n"}, parents=[base], ref="refs/heads/side")
    orphan = commit_tree(raw, {"b.py": "b = 1\n"}, ref="refs/heads/orphan")
    repo = GitRepo(tmp_path)

    assert repo.is_ancestor(base, main) is True
    assert repo.is_ancestor(main, base) is False
    assert repo.is_ancestor(main, main) is True
    assert repo.is_ancestor("side", "main") is False
    assert repo.merge_base("side", "main") == base
    assert repo.merge_base(side, orphan) is None
    with pytest.raises(RevisionError, match="unknown revision 'gone'"):
        repo.is_ancestor("gone", main)


def test_default_branch_prefers_origin_head(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"a.py": "a = 1\n"})
    repo = GitRepo(tmp_path)
    assert repo.default_branch() == "main"

    raw.create_reference("refs/remotes/origin/trunk", raw.head.target)
    raw.create_reference("refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")
    assert repo.default_branch() == "origin/trunk"
    assert repo.resolve(repo.default_branch() or "") == str(raw.head.target)


def test_default_branch_none_without_main_or_master(tmp_path: Path) -> None:
    raw = make_repo(tmp_path)
    raw.set_head("refs/heads/develop")
    commit_files(raw, {"a.py": "a = 1\n"})
    assert GitRepo(tmp_path).default_branch() is None


def test_list_files_walks_the_commit_tree(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"src/pkg/b.py": "b = 1\n", "a.txt": "hello\n", "src/z.go": "package z\n"})
    sub = "1" * 40
    commit_links(raw, symlinks={"link": "src/z.go"}, submodules={"libs/dep": sub})
    repo = GitRepo(tmp_path)

    entries = repo.list_files("HEAD")
    assert [e.path for e in entries] == ["a.txt", "libs/dep", "link", "src/pkg/b.py", "src/z.go"]
    by_path = {e.path: e for e in entries}
    assert by_path["a.txt"] == TreeEntry("a.txt", "blob", by_path["a.txt"].oid, 6)
    assert by_path["libs/dep"] == TreeEntry("libs/dep", "submodule", sub, 0)
    assert by_path["link"].kind == "link"
    assert repo.link_target(by_path["link"].oid) == "src/z.go"
    assert repo.read_blob(by_path["src/pkg/b.py"].oid) == b"b = 1\n"


def test_list_files_restricted_to_paths(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "a\n", "d/b.py": "b\n", "d/c.py": "c\n"})
    repo = GitRepo(tmp_path)
    picked = repo.list_files("HEAD", paths=["d/c.py", "a.py", "missing.py", "d"])
    assert [e.path for e in picked] == ["a.py", "d/c.py"]


def test_reads_committed_content_not_the_work_tree(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "committed\n"})
    (tmp_path / "a.py").write_text("edited but not committed\n")
    (tmp_path / "new.py").write_text("untracked\n")
    repo = GitRepo(tmp_path)
    entries = repo.list_files("HEAD")
    assert [e.path for e in entries] == ["a.py"]
    assert repo.read_blob(entries[0].oid) == b"committed\n"


def test_read_blob_of_a_missing_object(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "a\n"})
    with pytest.raises(RepositoryError, match="missing"):
        GitRepo(tmp_path).read_blob("2" * 40)


def test_read_blob_of_a_tree_or_commit(tmp_path: Path) -> None:
    make_repo(tmp_path, {"d/a.py": "a\n"})
    repo = GitRepo(tmp_path)
    commit = repo.resolve("HEAD")
    tree = str(pygit2.Repository(str(tmp_path)).revparse_single("HEAD:d").id)
    for oid in (commit, tree):
        with pytest.raises(RepositoryError, match="not a blob"):
            repo.read_blob(oid)


def test_diff_statuses_with_rename_similarity(tmp_path: Path) -> None:
    body = "".join(f"line {i} of a long enough file\n" for i in range(40))
    raw = make_repo(tmp_path, {"keep.py": "k = 1\n", "gone.py": "g = 1\n", "old/name.py": body})
    since = str(raw.head.target)
    until = commit_files(
        raw,
        {"keep.py": "k = 2\n", "added.py": "n = 1\n", "new/name.py": body + "one more line\n"},
        delete=["gone.py"],
        rename={"old/name.py": "new/name.py"},
    )
    changes = GitRepo(tmp_path).diff(since, until)
    assert changes == [
        FileChange("added", None, "added.py", 0),
        FileChange("deleted", "gone.py", None, 0),
        FileChange("modified", "keep.py", "keep.py", 0),
        FileChange("renamed", "old/name.py", "new/name.py", changes[3].similarity),
    ]
    assert 50 <= changes[3].similarity < 100


def test_diff_exact_rename_and_from_empty_tree(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"a.py": "same content here\n" * 5, "b.py": "b\n"})
    first = str(raw.head.target)
    second = commit_files(raw, rename={"a.py": "moved/a.py"})
    repo = GitRepo(tmp_path)
    assert repo.diff(first, second) == [FileChange("renamed", "a.py", "moved/a.py", 100)]
    assert repo.diff(None, first) == [FileChange("added", None, "a.py", 0), FileChange("added", None, "b.py", 0)]
    assert repo.diff(second, second) == []


def test_is_ignored_honours_gitignore(tmp_path: Path) -> None:
    make_repo(tmp_path, {".gitignore": "*.log\nbuild/\n", "a.py": "a\n"})
    repo = GitRepo(tmp_path)
    assert repo.is_ignored("debug.log") is True
    assert repo.is_ignored("build/out.txt") is True
    assert repo.is_ignored("a.py") is False


def test_shallow_clone_hint(tmp_path: Path) -> None:
    raw = make_repo(tmp_path, {"a.py": "a\n"})
    # libgit2 treats a repository with a .git/shallow file as a shallow clone.
    (Path(raw.path) / "shallow").write_text(f"{raw.head.target}\n")
    repo = GitRepo(tmp_path)
    assert repo.is_shallow is True
    with pytest.raises(RevisionError, match="shallow") as info:
        repo.resolve("v0.9")
    assert "\n" not in str(info.value)


def test_commit_time(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": "a\n"})
    assert GitRepo(tmp_path).commit_time("HEAD") == 1_700_000_000


def test_a_forked_process_reads_through_its_own_handle(tmp_path: Path) -> None:
    make_repo(tmp_path / "proj", {"a.py": "x = 1\n"})
    repo = GitRepo(tmp_path / "proj")
    (entry,) = repo.list_files(repo.resolve("HEAD"))
    inherited = repo._repo
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it read and whether it opened its own handle, then leave at once
        try:
            ok = repo.read_blob(entry.oid) == b"x = 1\n" and repo._repo is not inherited
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 2)
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert repo._repo is inherited  # the parent keeps its handle


def test_committed_files_are_read_from_the_work_tree_only_when_they_are_that_blob(tmp_path: Path) -> None:
    """read_blob_at takes a work-tree file that is the blob itself (no inflating), else the object database."""
    files = {"same.py": "x = 1\n", "edited.py": "y = 2\n", "gone.py": "z = 3\n", "fifo.py": "w = 4\n",
             "link.py": "v = 5\n", "grown.py": "u = 6\n"}
    raw = make_repo(tmp_path / "r", files)
    repo = GitRepo(tmp_path / "r")
    entries = {e.path: e for e in repo.list_files("HEAD")}
    root = tmp_path / "r"
    # A blob missing from the object database is still read when the work tree holds it unchanged.
    same = entries["same.py"]
    loose = Path(raw.path) / "objects" / same.oid[:2] / same.oid[2:]
    loose.unlink()
    assert repo.read_blob_at(same.oid, "same.py", same.size) == b"x = 1\n"
    with pytest.raises(RepositoryError):
        repo.read_blob(same.oid)
    # Anything else there: the committed content, from the database.
    (root / "edited.py").write_text("y = 9\n")  # the same size, another content: its hash tells
    (root / "grown.py").write_text("u = 600000\n")
    (root / "gone.py").unlink()
    (root / "fifo.py").unlink()
    os.mkfifo(root / "fifo.py")  # reading it would wait for a writer forever
    (root / "link.py").unlink()
    (root / "link.py").symlink_to("same.py")
    for path, content in files.items():
        if path != "same.py":
            entry = entries[path]
            assert repo.read_blob_at(entry.oid, path, entry.size) == content.encode(), path
