"""`codefactory incremental`: bring the dataset from one commit to another, paying only for what changed.

Only the files that changed between `since` and `until` are rescanned and rechunked. A live Scene-1 sample
whose chunk text still exists at `until` keeps its id (its provenance follows the chunk, no LLM call); the
others are retired, and chunk texts that are new get generated. A Scene-2 proposal is regenerated only when
the skeleton slice (public surface) of a module it is anchored on changed, never for a body-only edit.
Generation goes through `pipeline.run_generation`, so the cache, max_requests, progress, the summary and
the one-version-per-run changelog all apply as in a build.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codefactory import pipeline
from codefactory.chunk import chunk_files
from codefactory.chunk_index import ChunkIndex
from codefactory.dirtree import render_tree
from codefactory.errors import RevisionError
from codefactory.gitrepo import GitRepo
from codefactory.models import Chunk, SourceFile
from codefactory.pipeline import RunReport
from codefactory.scan import IGNORE_FILE, ScanResult
from codefactory.scene2 import THEMES, Anchor, choose_anchors, slice_sha256
from codefactory.skeleton import Skeleton, extract_symbols
from codefactory.snapshot import Snapshot, Workspace
from codefactory.store import DatasetStore, LiveSet, Pending

FALLBACKS = ("none", "full")
# Provenance fields that say where a chunk is; the commit alone changing is not a move.
_LOCATION = ("path", "symbol", "start_line", "end_line", "language", "chunk_id")


def run_incremental(
    ws: Workspace,
    *,
    since: str | None = None,
    until: str | None = None,
    fallback: str = "none",
    dry_run: bool = False,
) -> RunReport:
    """Update the dataset for the changes from `since` (default: the manifest's source commit) to `until`.

    Revision problems raise RevisionError/RepositoryError before anything is written. With no manifest
    and no `since` this is a full build at `until`; `fallback="full"` also rebuilds against the whole
    tree when `since` cannot be used (missing from a shallow clone, unknown, or not an ancestor).
    The output directory's lock is held throughout: the plan reads the dataset it then updates.
    """
    with pipeline.write_lock(ws, dry_run):
        return _run_incremental(ws, since=since, until=until, fallback=fallback, dry_run=dry_run)


def _run_incremental(ws: Workspace, *, since: str | None, until: str | None, fallback: str, dry_run: bool) -> RunReport:
    store = ws.dataset_store()
    until_sha = ws.repo.resolve(until or ws.config["rev"])  # also rejects an empty repository
    base = since or (store.manifest() or {}).get("source_commit")
    if not base:
        return pipeline.run_build(ws, dry_run=dry_run, rev=until_sha)
    since_sha = check_base(ws.repo, base, until_sha, from_manifest=since is None, fallback=fallback)
    plan = plan_update(ws, store, since_sha, until_sha)
    report = pipeline.run_generation(
        ws, plan.snapshot, command="incremental", scene1_chunks=plan.scene1, qa_count=ws.config["scene1.qa_count"],
        scene2_anchors=plan.scene2, retired=plan.retired, moved=plan.moved, pending=plan.carry, dry_run=dry_run,
        from_commit=since_sha, store=store,
    )
    report.stats.deferred += len(plan.carry["scene2"])  # over scene2.max_new_per_run: left for the next run
    if not dry_run:
        report.moved = len(plan.moved) if report.version else 0
        path = _update_chunk_index(ws, plan)
        if path is not None:
            report.outputs.insert(0, path)
        if plan.full_snapshot is not None:
            report.outputs[:0] = pipeline.write_skeleton(ws, plan.full_snapshot.skeleton)
    return report


def check_base(repo: GitRepo, base: str, until: str, *, from_manifest: bool, fallback: str) -> str | None:
    """The base commit's sha, or None to compare against nothing (fallback full); else a one-line error."""
    if fallback not in FALLBACKS:
        raise RevisionError(f"unknown fallback '{fallback}' (expected {' or '.join(FALLBACKS)})")
    full = fallback == "full"
    named = f"the dataset's source commit {base[:12]} (manifest.json)" if from_manifest else f"--since {base}"
    shallow = (f"{named} is not in this shallow clone: fetch more history (`git fetch --deepen=100` or "
               "`git fetch --unshallow`; actions/checkout: `fetch-depth: 0`) or pass `--fallback full`")
    try:
        since = repo.resolve(base)
    except RevisionError:
        if full:
            return None
        if repo.is_shallow:
            raise RevisionError(shallow) from None
        if from_manifest:
            raise RevisionError(f"{named} is not in this repository (was history rewritten?): pass --since REV "
                                "or run `codefactory build`") from None
        raise
    try:
        related = repo.is_ancestor(since, until)
    except RevisionError:  # the history between them lies beyond a shallow clone's boundary
        if full:
            return None
        raise RevisionError(shallow) from None
    if not related:
        if full:
            return None
        raise RevisionError(f"{named} is not an ancestor of {until[:12]} (history was rewritten, e.g. by a "
                            "force-push): run `codefactory build`, or pass a --since reachable from --until")
    return since


@dataclass
class Plan:
    """What one incremental run does; computed without writing anything."""

    since: str | None
    until: str
    snapshot: Snapshot  # the rescanned files and chunks at `until` (plus the chunks of re-anchored modules)
    rescanned: set[str] | None  # paths whose chunks were recomputed; None: every path
    chunks: list[Chunk]  # the chunks of the rescanned files
    scene1: list[Chunk] = field(default_factory=list)
    scene2: list[Anchor] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    moved: dict[str, dict[str, Any]] = field(default_factory=dict)
    carry: Pending = field(default_factory=lambda: {"scene1": [], "scene2": []})
    full_snapshot: Snapshot | None = None  # set when every file was rescanned
    index: ChunkIndex | None = None  # chunks.json as at `since`; None when there is none

    def affected(self, path: str) -> bool:
        return self.rescanned is None or path in self.rescanned


class _Tree:
    """Files of `until`, scanned on demand: a 1-file commit on a large repo reads a handful of blobs."""

    def __init__(self, ws: Workspace, until: str, snapshot: Snapshot | None) -> None:
        self.ws, self.until = ws, until
        self.files: dict[str, SourceFile | None] = {}
        self.complete = snapshot is not None
        if snapshot is not None:
            self.files.update({f.path: f for f in snapshot.scan.files})

    def get(self, paths: Iterable[str]) -> list[SourceFile]:
        wanted = sorted(set(paths))
        missing = [p for p in wanted if p not in self.files]
        if missing and not self.complete:
            result = _scan(self.ws, self.until, missing)
            self.files.update({p: None for p in missing})
            self.files.update({f.path: f for f in result.files})
        return [f for p in wanted if (f := self.files.get(p)) is not None]


def _scan(ws: Workspace, rev: str, paths: Collection[str] | None) -> ScanResult:
    return ws.scan(rev, paths)


def _chunk(ws: Workspace, files: Sequence[SourceFile]) -> list[Chunk]:
    return chunk_files(files, max_tokens=ws.config["chunk.max_tokens"], min_tokens=ws.config["chunk.min_tokens"])


def plan_update(ws: Workspace, store: DatasetStore, since: str | None, until: str) -> Plan:
    """Decide what to keep, move, retire and generate; `since=None` treats every file as changed."""
    pending = store.pending()
    index = ChunkIndex.read(ws.out / "chunks.json")
    renames: dict[str, str] = {}
    full_snapshot: Snapshot | None = None
    if since is not None:
        changes = ws.repo.diff(since, until)
        old_paths = {ch.old_path for ch in changes if ch.old_path}
        new_paths = {ch.new_path for ch in changes if ch.new_path}
        renames = {ch.old_path: ch.new_path for ch in changes if ch.status == "renamed" and ch.old_path and ch.new_path}
        if IGNORE_FILE in old_paths | new_paths:
            since = None  # the ignore rules changed: any file may have entered or left the selection
    for entry in pending["scene1"]:  # pending work in a renamed file: its chunk ids follow the path
        if entry["path"] in renames:
            entry["id"] = renames[entry["path"]] + entry["id"][len(entry["path"]):]
            entry["path"] = renames[entry["path"]]
    if since is None:
        full_snapshot = pipeline.take_snapshot(ws, until)
        tree = _Tree(ws, until, full_snapshot)
        plan = Plan(since, until, full_snapshot, None, full_snapshot.chunks, full_snapshot=full_snapshot)
        old_shas = index.shas() if index is not None else set()
    else:
        # Files holding pending work are rescanned too, so that work can be found and picked up.
        pending_paths = {e["path"] for e in pending["scene1"]}
        tree = _Tree(ws, until, None)
        files = tree.get(new_paths | pending_paths)
        chunks = _chunk(ws, files)
        rescanned = old_paths | new_paths | pending_paths
        snapshot = Snapshot(ScanResult(until, files, []), chunks, _EMPTY_SKELETON, rescanned=frozenset(rescanned))
        plan = Plan(since, until, snapshot, rescanned, chunks)
        old_shas = {c.sha256 for c in _chunk(ws, _scan(ws, since, old_paths).files)} if old_paths else set()
        old_shas |= {c.sha256 for c in chunks if c.path not in new_paths}  # rescanned for pending work only
    plan.index = index
    live = store.live()
    _plan_scene1(plan, store, live, old_shas, pending)
    _plan_scene2(ws, plan, store, live, tree, renames, pending)
    return plan


_EMPTY_SKELETON = Skeleton(tree="", files=[], centrality={}, token_count=0, omitted=[])


def _plan_scene1(plan: Plan, store: DatasetStore, live: LiveSet, old_shas: set[str], pending: Pending) -> None:
    by_sha: dict[str, list[Chunk]] = {}
    for chunk in plan.chunks:
        by_sha.setdefault(chunk.sha256, []).append(chunk)

    # Only samples in a rescanned file, or of a rescanned chunk's text, matter: a large log is parsed just for those.
    if plan.rescanned is None:
        raw = store.read_raw("scene1")
    else:
        raw = store.read_raw("scene1", ids=set(live.moved), sources={
            "path": plan.rescanned, "chunk_sha256": {c.sha256 for c in plan.chunks}})
    current = {i: live.moved.get(i, raw[i].source) for i in live.ids() if i in raw}
    # Identical text elsewhere in an untouched file still holds the sample (same text, same sample id).
    spare: dict[str, list[dict[str, Any]]] = {}
    if plan.rescanned is not None and plan.index is not None:
        lost = {s["chunk_sha256"] for s in current.values() if plan.affected(s["path"])} - set(by_sha)
        for entry in plan.index.with_sha(lost):
            if not plan.affected(entry["path"]):
                spare.setdefault(entry["sha256"], []).append(entry)
    for sample_id, source in current.items():
        if not plan.affected(source["path"]):
            continue
        sha = source["chunk_sha256"]
        target = _closest([c.to_dict() for c in by_sha.get(sha, [])] or spare.get(sha, []), source)
        if target is None:
            plan.retired.append(sample_id)
            continue
        moved = {**source, "commit": plan.until, "path": target["path"], "symbol": target["symbol"],
                 "start_line": target["start_line"], "end_line": target["end_line"],
                 "language": target["language"], "chunk_id": target["id"]}
        if any(moved.get(k) != source.get(k) for k in _LOCATION):
            plan.moved[sample_id] = moved

    gone = set(plan.retired)
    covered = {source["chunk_sha256"] for i, source in current.items() if i not in gone}
    wanted = {e["id"] for e in pending["scene1"]}
    seen: set[str] = set()
    for chunk in plan.chunks:
        # New text, or work an earlier run deferred; an old chunk a --limit left out stays out.
        if chunk.sha256 in covered or chunk.sha256 in seen or (chunk.sha256 in old_shas and chunk.id not in wanted):
            continue
        seen.add(chunk.sha256)
        plan.scene1.append(chunk)


def _closest(candidates: list[dict[str, Any]], source: dict[str, Any]) -> dict[str, Any] | None:
    """The chunk a sample now belongs to: the same id if it still exists, else the same file, else any."""
    for match in (lambda c: c["id"] == source.get("chunk_id"), lambda c: c["path"] == source.get("path")):
        for candidate in candidates:
            if match(candidate):
                return candidate
    return candidates[0] if candidates else None


def _plan_scene2(ws: Workspace, plan: Plan, store: DatasetStore, live: LiveSet, tree: _Tree,
                 renames: dict[str, str], pending: Pending) -> None:
    seed = ws.config["seed"]
    raw = store.read_raw("scene2")
    proposals = {i: (raw[i], live.moved.get(i, raw[i].source)) for i in live.ids() if i in raw}
    touched = {i: p for i, p in proposals.items() if any(plan.affected(m) for m in p[1]["modules"])}
    wanted = pending["scene2"]
    module_paths = {renames.get(m, m) for _, src in touched.values() for m in src["modules"]}
    module_paths |= {renames.get(m, m) for e in wanted for m in e["modules"]}
    files = {f.path: f for f in tree.get(module_paths)} if module_paths else {}

    slots: dict[int, tuple[str, tuple[str, ...]]] = {}  # proposal index -> (theme, modules still there)
    for sample_id, (sample, source) in touched.items():
        old = source["modules"]
        modules = tuple(sorted(m for m in (renames.get(m, m) for m in old) if m in files))
        if len(modules) == len(old):
            # Same public surface, read under the old names: only bodies changed, or files were renamed.
            before = _surface([(m, files[renames.get(m, m)]) for m in old])
            if slice_sha256(before) == source["skeleton_sha256"]:
                if list(modules) != old:
                    plan.moved[sample_id] = {**source, "commit": plan.until, "modules": list(modules),
                                             "skeleton_sha256": slice_sha256(_surface([(m, files[m]) for m in modules]))}
                continue
        plan.retired.append(sample_id)
        theme = sample.input.get("theme", THEMES[0])
        index = sample.input.get("index", (THEMES.index(theme) - seed) % len(THEMES) if theme in THEMES else 0)
        slots.setdefault(index, (theme, modules))
    kept = {p[0].input.get("index") for i, p in proposals.items() if i not in set(plan.retired)}
    for entry in wanted:
        if entry["index"] not in kept:
            modules = tuple(sorted(m for m in (renames.get(m, m) for m in entry["modules"]) if m in files))
            slots.setdefault(entry["index"], (entry["theme"], modules))
    if not slots:
        return

    full = plan.full_snapshot
    orphans = [i for i, (_, modules) in slots.items() if not modules]
    if orphans:  # every anchored module is gone: pick the slot's modules afresh, as a build would
        full = full or pipeline.take_snapshot(ws, plan.until)
        fresh = choose_anchors(full.skeleton, max(orphans) + 1, seed=seed)
        slots.update({i: (slots[i][0], fresh[i].modules) for i in orphans if i < len(fresh)})
    anchors = [Anchor(index=i, modules=modules, theme=theme) for i, (theme, modules) in sorted(slots.items()) if modules]
    cap = ws.config["scene2.max_new_per_run"]
    plan.scene2 = anchors[:cap]
    plan.carry["scene2"] = [{"index": a.index, "theme": a.theme, "modules": list(a.modules)} for a in anchors[cap:]]
    if not plan.scene2:
        return
    if plan.full_snapshot is not None:
        return  # the snapshot already holds the whole skeleton and every chunk

    # Prompts show the whole directory tree, the anchors' symbols and snippets of their code.
    all_files = full.scan.files if full is not None else _scan(ws, plan.until, None).files
    anchored = {m for a in plan.scene2 for m in a.modules}
    anchor_files = [f for f in all_files if f.path in anchored]
    budget = ws.config["skeleton.token_budget"] // 2  # the tree's share of the budget in build_skeleton
    skeleton = Skeleton(tree=render_tree([f.path for f in all_files], root=ws.repo.name, token_budget=budget),
                        files=[s for s in map(extract_symbols, anchor_files) if s.symbols],
                        centrality={}, token_count=0, omitted=[])
    extra = [c for c in _chunk(ws, anchor_files) if not plan.affected(c.path)]
    plan.snapshot = Snapshot(plan.snapshot.scan, [*plan.snapshot.chunks, *extra], skeleton,
                             rescanned=plan.snapshot.rescanned)


def _surface(named: Iterable[tuple[str, SourceFile]]) -> str:
    """The skeleton slice of these files, each shown under the given path (as `Skeleton.slice` renders it)."""
    symbols = sorted((replace(extract_symbols(f), path=name) for name, f in named), key=lambda s: s.path)
    return Skeleton(tree="", files=[s for s in symbols if s.symbols], centrality={}, token_count=0,
                    omitted=[]).slice(s.path for s in symbols)


def _update_chunk_index(ws: Workspace, plan: Plan) -> Path | None:
    """Patch the rescanned files' chunks into chunks.json, which then equals what `chunk` would write."""
    if plan.full_snapshot is not None:
        return pipeline.write_chunks(ws, plan.full_snapshot.chunks)
    if plan.index is None:
        return None  # never written (a Scene-2-only dataset): a partial index would mislead
    plan.index.write_patched(plan.rescanned or (), [c.to_dict() for c in plan.chunks])
    return plan.index.path
