"""Why chunks change between consecutive commits: real edits, or only where the chunker cut.

Scene-1 asks once per distinct chunk text, so every chunk whose text is new at a commit costs a
request. Each such chunk is put in one class:

- (a) the code changed: the chunk has a line its file did not have, a definition in it lost lines,
  lines between its own were removed or reordered, it was re-indented, or its file is new;
- (b) the same code, cut differently: the chunk's text is a run of lines its file already had (a
  window or group whose boundaries moved, a class that crossed the size limit);
- (c) neither.

    .venv/bin/python bench/churn.py bench/.cache/corpora/releases-attrs
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codefactory.chunk import chunk_files  # noqa: E402
from codefactory.config import load_config  # noqa: E402
from codefactory.gitrepo import GitRepo  # noqa: E402
from codefactory.models import Chunk, SourceFile  # noqa: E402
from codefactory.outline import Definition, outline  # noqa: E402
from codefactory.pipeline import Workspace  # noqa: E402


def definitions(file: SourceFile) -> list[tuple[str, int, int, str]]:
    """(qualified name, first row, last row, text) of every definition of the file, members included."""
    lines, tree = file.text.split("\n"), outline(file)
    found: list[tuple[str, int, int, str]] = []

    def walk(items: tuple[Definition, ...]) -> None:
        for d in items:
            found.append((d.qualified, d.start, d.end, "\n".join(lines[d.start : d.end + 1])))
            walk(d.members)

    if tree is not None:
        walk(tree.definitions)
    return found


def shape(chunk: Chunk) -> str:
    if chunk.kind == "window":
        return "text window"
    if "#part" in chunk.id:
        return "part of a big definition"
    if "+" in chunk.id.split("::")[-1]:
        return "merged group"
    return "module code" if chunk.kind == "module" else chunk.kind


def classify(chunk: Chunk, new: SourceFile, old: SourceFile | None) -> str:
    if old is None:
        return "a: new file"
    old_lines = {line.strip() for line in old.text.split("\n")}
    if any(line.strip() not in old_lines for line in chunk.text.split("\n")):
        return f"a: {shape(chunk)}"
    before: dict[str, set[str]] = defaultdict(set)
    for name, _, _, text in definitions(old):
        before[name].add(text)
    if any(name in before and text not in before[name] for name, start, end, text in definitions(new)
           if chunk.start_line - 1 <= start and end <= chunk.end_line - 1):
        return "a: lines removed"
    if f"\n{chunk.text}\n" in f"\n{old.text}\n":
        return f"b: {shape(chunk)}"
    if set(chunk.text.split("\n")) <= set(old.text.split("\n")):
        return "a: lines removed"  # every line was there, not in this order: some between them went
    if not set(chunk.text.split("\n")) <= set(old.text.split("\n")):
        return "a: re-indented"  # every line was there, but with other leading whitespace
    return "c: other"


def main(root: Path) -> None:
    ws = Workspace(repo=GitRepo(root), config=load_config(root, flags={}, environ={}), progress=False)
    bounds = {"max_tokens": ws.config["chunk.max_tokens"], "min_tokens": ws.config["chunk.min_tokens"]}
    git = pygit2.Repository(str(root))
    commits = list(git.walk(git.head.target, pygit2.GIT_SORT_TOPOLOGICAL | pygit2.GIT_SORT_REVERSE))

    def snapshot(commit: pygit2.Commit) -> tuple[dict[str, SourceFile], list[Chunk]]:
        files = ws.scan(str(commit.id)).files
        return {f.path: f for f in files}, chunk_files(files, **bounds)

    rows: list[tuple[str, int, int, Counter[str]]] = []
    old_files, old_chunks = snapshot(commits[0])
    for commit in commits[1:]:
        files, chunks = snapshot(commit)
        known = {(c.language, c.text) for c in old_chunks}
        seen: set[tuple[str, str]] = set()
        classes: Counter[str] = Counter()
        for chunk in chunks:
            key = (chunk.language, chunk.text)
            if key not in known and key not in seen:
                seen.add(key)
                classes[classify(chunk, files[chunk.path], old_files.get(chunk.path))] += 1
        full = len({(c.language, c.text) for c in chunks})
        rows.append((commit.message.strip().splitlines()[0][:20], len(seen), full, classes))
        old_files, old_chunks = files, chunks

    total: Counter[str] = Counter()
    for *_, classes in rows:
        total.update(classes)
    names = sorted(total)
    print("| commit | changed | full | fewer | " + " | ".join(names) + " |")
    print("|---" * (4 + len(names)) + "|")
    for label, changed, full, classes in rows:
        print(f"| {label} | {changed} | {full} | {1 - changed / full:.1%} | "
              + " | ".join(str(classes[n]) for n in names) + " |")
    changed_all = sum(r[1] for r in rows)
    print(f"| total | {changed_all} | {sum(r[2] for r in rows)} | | " + " | ".join(str(total[n]) for n in names) + " |")
    cut_only = sum(v for k, v in total.items() if k.startswith("b"))
    print(f"\nmedian changed {statistics.median(r[1] for r in rows):g} of {statistics.median(r[2] for r in rows):g} "
          f"({statistics.median(1 - r[1] / r[2] for r in rows):.1%} fewer); (b) cut only: {cut_only} "
          f"({cut_only / changed_all:.1%} of changed chunks)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/.cache/corpora/releases-attrs"))
