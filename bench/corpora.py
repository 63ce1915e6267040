"""Benchmark corpora: real code not written here, committed into git repositories with pygit2.

Each corpus is a repository with a work tree under bench/.cache/corpora/ (git-ignored), built once and
reused: repomix reads the work tree, codefactory reads the commits. A `.complete` marker written last
makes an interrupted build start over instead of being reused half done.

- stdlib: the standard library of the Python running the bench (no site-packages, caches or binaries).
- go: Go's standard library from Debian's golang-src (/usr/share/go-*/src).
- releases: successive sdists of a PyPI project, one commit per release (`pip download`).
- synthetic: a history made from stdlib files (edits, additions, a rename, a deletion): no downloads,
  so `--quick` runs from a clean clone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

CACHE = Path(__file__).resolve().parent / ".cache"
CORPORA = CACHE / "corpora"
_MARKER = ".complete"
_SIGNATURE_TIME = 1_700_000_000

# Not source: compiled caches, shared objects, the static libpython of config-*.
_STDLIB_SKIP_DIRS = {"site-packages", "__pycache__", "lib-dynload", "dist-packages"}


@dataclass
class Corpus:
    name: str
    root: Path  # work tree
    commits: list[str] = field(default_factory=list)  # oldest first
    labels: list[str] = field(default_factory=list)  # one per commit (release version, edit summary)
    files: int = 0  # files in the last commit's tree
    bytes: int = 0

    @property
    def head(self) -> str:
        return self.commits[-1]


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def go_src_dir() -> Path | None:
    """Go's standard library as Debian's golang-src installs it, newest version first."""
    found = sorted(Path("/usr/share").glob("go-*/src"), reverse=True) + sorted(Path("/usr/lib").glob("go-*/src"), reverse=True)
    return next((p for p in found if (p / "fmt").is_dir()), None)


def _copy_tree(src: Path, dst: Path, skip_dirs: set[str], keep: Callable[[Path], bool]) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in skip_dirs or part.startswith("config-") for part in rel.parts):
            continue
        if path.is_symlink() or not path.is_file() or not keep(path):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _commit_worktree(repo: pygit2.Repository, message: str, stamp: int) -> str:
    """Stage the whole work tree (additions, changes, deletions) and commit it on HEAD."""
    repo.index.clear()  # rebuilt from the work tree: deleted files leave, renamed ones move
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    sig = pygit2.Signature("Bench", "bench@example.com", stamp, 0)
    return str(repo.create_commit("HEAD", sig, sig, message, tree, parents))


def _log(repo: pygit2.Repository) -> tuple[list[str], list[str]]:
    walk = list(repo.walk(repo.head.target, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE))
    return [str(c.id) for c in walk], [c.message.strip() for c in walk]


def _finish(name: str, root: Path) -> Corpus:
    repo = pygit2.Repository(str(root))
    commits, labels = _log(repo)
    tree = repo[commits[-1]].tree
    files = size = 0
    stack = [tree]
    while stack:
        for obj in stack.pop():
            if isinstance(obj, pygit2.Tree):
                stack.append(obj)
            else:
                files += 1
                size += obj.size if isinstance(obj, pygit2.Blob) else 0
    return Corpus(name, root, commits, labels, files, size)


def _cached(name: str, build: Callable[[Path], None], key: str) -> Corpus:
    """The corpus `name`, built by `build(root)` unless a complete build with the same key exists."""
    root = CORPORA / name
    marker = root / ".git" / _MARKER
    if not (marker.is_file() and marker.read_text() == key):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        build(root)
        marker.write_text(key)
    return _finish(name, root)


def _init(root: Path) -> pygit2.Repository:
    repo = pygit2.init_repository(str(root), initial_head="main")
    # Output of the benchmark runs themselves never becomes part of the corpus.
    (root / ".gitignore").write_text("/data/\n/.codefactory/\n/repomix-output*\n")
    return repo


def stdlib_corpus(subset: Iterable[str] | None = None, name: str = "stdlib") -> Corpus:
    """The running Python's standard library as one commit; `subset` limits it to these top-level names."""
    src = stdlib_dir()
    wanted = sorted(subset) if subset is not None else None

    def build(root: Path) -> None:
        repo = _init(root)
        if wanted is None:
            _copy_tree(src, root, _STDLIB_SKIP_DIRS, lambda p: not p.name.endswith((".pyc", ".so", ".a")))
        else:
            for top in wanted:
                path = src / top
                if path.is_dir():
                    _copy_tree(path, root / top, _STDLIB_SKIP_DIRS, lambda p: p.suffix == ".py")
                elif path.is_file():
                    shutil.copyfile(path, root / top)
        _commit_worktree(repo, f"Python {sys.version.split()[0]} standard library", _SIGNATURE_TIME)

    return _cached(name, build, f"{src}|{wanted}")


def go_corpus() -> Corpus | None:
    """Go's standard library (golang-src), or None when it is not installed."""
    src = go_src_dir()
    if src is None:
        return None

    def build(root: Path) -> None:
        repo = _init(root)
        _copy_tree(src, root, set(), lambda p: True)
        _commit_worktree(repo, f"Go standard library ({src.parent.name})", _SIGNATURE_TIME)

    return _cached("go", build, str(src))


# -- release history ------------------------------------------------------------------------------

def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


def download_sdists(package: str, versions: list[str]) -> dict[str, Path]:
    """The sdist of each version, downloaded once with pip into bench/.cache/sdists/<package>/."""
    dest = CACHE / "sdists" / package
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    for version in versions:
        existing = _sdist_in(dest, package, version)
        if existing is None:
            # pip prepares each sdist's metadata with its build backend (fetched once, then cached by pip).
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                            "-d", str(dest), f"{package}=={version}"], check=True)
            existing = _sdist_in(dest, package, version)
        if existing is None:
            raise RuntimeError(f"pip downloaded no sdist for {package}=={version}")
        found[version] = existing
    return found


def _sdist_in(directory: Path, package: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "[-_.]", package)
    pattern = re.compile(rf"^{stem}-{re.escape(version)}\.(tar\.gz|zip)$", re.IGNORECASE)
    return next((p for p in sorted(directory.iterdir()) if pattern.match(p.name)), None)


def _extract(archive: Path, into: Path) -> None:
    """The sdist's files without its top-level `name-version/` directory."""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                parts = info.filename.split("/", 1)
                if info.is_dir() or len(parts) < 2 or not parts[1]:
                    continue
                target = into / parts[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(info))
        return
    with tarfile.open(archive) as t:
        for member in t.getmembers():
            parts = member.name.split("/", 1)
            if not member.isfile() or len(parts) < 2 or not parts[1]:
                continue
            target = into / parts[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            source = t.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())


def release_corpus(package: str, versions: list[str]) -> Corpus:
    """One commit per release, oldest first: the history a project's users actually saw."""
    ordered = sorted(versions, key=_version_key)

    def build(root: Path) -> None:
        sdists = download_sdists(package, ordered)
        repo = _init(root)
        for number, version in enumerate(ordered):
            for child in root.iterdir():  # the next release replaces the whole tree
                if child.name not in (".git", ".gitignore"):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            _extract(sdists[version], root)
            _commit_worktree(repo, version, _SIGNATURE_TIME + number * 86_400)

    return _cached(f"releases-{package}", build, ",".join(ordered))


# -- synthetic history (no downloads) -------------------------------------------------------------

_SYNTHETIC_BASE = ["json", "csv.py", "textwrap.py", "shlex.py", "heapq.py", "sched.py", "bisect.py", "difflib.py",
                   "fractions.py", "string.py", "queue.py", "colorsys.py"]
# Each step is one typical commit: (label, edit applied to the work tree).
_DEF = re.compile(r"^(    )?def \w+\(", re.MULTILINE)


def _with_edit(text: str, nth: int, marker: str) -> str:
    """`text` with a statement inserted at the top of its nth function: that definition's text changes,
    the definitions after it only move down a line."""
    defs = list(_DEF.finditer(text))
    match = defs[nth % len(defs)]
    body_start = text.index(":\n", match.end()) + 2  # after the (possibly multi-line) signature
    indent = (match.group(1) or "") + "    "
    return text[:body_start] + f"{indent}{marker}\n" + text[body_start:]


def _edit_function_body(path: Path, nth: int) -> None:
    path.write_text(_with_edit(path.read_text(encoding="utf-8"), nth, f"_bench_counter = {nth}  # benchmark edit"),
                    encoding="utf-8")


def synthetic_history() -> Corpus:
    """~10 commits over a stdlib subset: edits of one function, new files, a rename, a deletion."""
    src = stdlib_dir()

    def build(root: Path) -> None:
        repo = _init(root)
        for top in _SYNTHETIC_BASE:
            path = src / top
            if path.is_dir():
                _copy_tree(path, root / top, _STDLIB_SKIP_DIRS, lambda p: p.suffix == ".py")
            else:
                shutil.copyfile(path, root / top)
        stamp = _SIGNATURE_TIME
        _commit_worktree(repo, f"base: {len(_SYNTHETIC_BASE)} stdlib modules", stamp)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("edit one function in textwrap.py", lambda: _edit_function_body(root / "textwrap.py", 3)),
            ("edit two functions in csv.py and shlex.py",
             lambda: (_edit_function_body(root / "csv.py", 1), _edit_function_body(root / "shlex.py", 2))),
            ("add a module (graphlib.py)", lambda: shutil.copyfile(src / "graphlib.py", root / "graphlib.py")),
            ("rename heapq.py -> heap_queue.py", lambda: (root / "heapq.py").rename(root / "heap_queue.py")),
            ("edit one function in json/decoder.py", lambda: _edit_function_body(root / "json" / "decoder.py", 0)),
            ("delete sched.py", lambda: (root / "sched.py").unlink()),
            ("edit three functions in difflib.py", lambda: [_edit_function_body(root / "difflib.py", i)
                                                            for i in (2, 9, 17)]),
            ("add a module (numbers.py) and edit bisect.py",
             lambda: (shutil.copyfile(src / "numbers.py", root / "numbers.py"),
                      _edit_function_body(root / "bisect.py", 0))),
            ("edit one function in fractions.py", lambda: _edit_function_body(root / "fractions.py", 11)),
        ]
        for label, apply in steps:
            stamp += 3600
            apply()
            _commit_worktree(repo, label, stamp)

    return _cached("synthetic", build, f"{src}|{_SYNTHETIC_BASE}|v2")


def make_one_file_commit(corpus: Corpus, path: str) -> str:
    """A commit on a side branch of `corpus` that edits one function of `path`; the corpus HEAD is unchanged."""
    repo = pygit2.Repository(str(corpus.root))
    base = repo[corpus.head]
    assert isinstance(base, pygit2.Commit)
    blob = repo[base.tree[path].id]
    assert isinstance(blob, pygit2.Blob)
    text = blob.data.decode("utf-8")
    edited = _with_edit(text, len(_DEF.findall(text)) // 2, "_bench_edit = 1  # one-file commit")
    index = pygit2.Index()
    index.read_tree(base.tree)
    index.add(pygit2.IndexEntry(path, repo.create_blob(edited.encode("utf-8")), pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(repo)
    sig = pygit2.Signature("Bench", "bench@example.com", _SIGNATURE_TIME + 10, 0)
    return str(repo.create_commit(None, sig, sig, f"edit {path}", tree, [base.id]))
