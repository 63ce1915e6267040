"""The repository index kept between runs (index_cache.py) answers as an index built from a fresh scan."""

from __future__ import annotations

import marshal
from pathlib import Path

import pytest

from codefactory import index_cache, pipeline, quality_cache
from codefactory.grounding import Definition, FileEntry, RepoIndex
from codefactory.incremental import plan_update
from codefactory.models import SourceFile
from codefactory.scan import scan
from codefactory.skeleton import build_skeleton
from codefactory.store import DatasetStore
from tests.gitrepos import commit_files, make_repo
from tests.test_pipeline import FILES, workspace


def _old_index(ws: pipeline.Workspace, commit: str) -> RepoIndex:
    """The index as quality.py built it before it was kept per file: a scan and a skeleton of its own."""
    c = ws.config
    result = scan(ws.repo, commit, include=c["scan.include"], exclude=[*c["scan.exclude"], *ws.own_paths],
                  max_file_bytes=c["scan.max_file_bytes"])
    skeleton = build_skeleton(result.files, token_budget=1, repo_name="")
    return RepoIndex.build(result.files, [Definition(s.name, s.kind, f.path) for f in skeleton.files
                                          for s in f.symbols])

def _view(index: RepoIndex) -> tuple:
    """What an index answers, whatever mappings hold it (kept indexes read their parts lazily)."""
    return (frozenset(index.tokens), index.paths, dict(index.definitions),
            {path: frozenset(names) for path, names in index.names_by_path.items()})


@pytest.fixture
def shop_repo(tmp_path: Path):
    return make_repo(tmp_path / "shop", FILES)

def test_index_from_snapshot_scan_and_patch_equal_a_fresh_scan(shop_repo, tmp_path: Path) -> None:
    root = Path(shop_repo.workdir)
    ws = workspace(root, None)
    head = ws.repo.head_commit()
    snapshot = pipeline.take_snapshot(ws, head)
    expected = _view(_old_index(ws, head))
    assert _view(RepoIndex.from_entries(index_cache.entries_of(snapshot.scan.files, {
        s.path: s for s in snapshot.skeleton.files}))) == expected
    assert _view(RepoIndex.from_entries(index_cache.scan_entries(ws, head))) == expected
    assert _view(index_cache.repo_index_at(ws, head, snapshot)) == expected
    assert (quality_cache.quality_cache_dir(ws) / index_cache.INDEX_DIR / f"{head}.marshal").is_file()

    # A commit that edits, adds, deletes and renames: the base's index patched with the rescanned files.
    after = commit_files(shop_repo, {"shop/orders.py": FILES["shop/orders.py"] + "\n\ndef refund_all(x):\n    return x\n",
                                     "shop/extra.py": "class ExtraThing:\n    def go(self):\n        return 1\n"},
                         delete=["README.md"], rename={"shop/inventory.py": "shop/stock.py"})
    plan = plan_update(ws, DatasetStore(ws.out), head, after)
    assert plan.snapshot.rescanned is not None
    index_cache._MEMO.clear()
    patched = _view(index_cache.repo_index_at(ws, after, plan.snapshot, head))
    assert patched == _view(_old_index(ws, after))
    index_cache._MEMO.clear()
    assert _view(index_cache.repo_index_at(ws, after)) == patched  # read back from the file

@pytest.mark.parametrize("few_names", [256, 0])  # names shifted in place, or the sequences rebuilt
def test_summary_patched_with_changed_files_equals_one_built_whole(shop_repo, few_names: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_cache, "_FEW_NAMES", few_names)
    root = Path(shop_repo.workdir)
    ws = workspace(root, None)
    head = ws.repo.head_commit()
    after = commit_files(shop_repo, {"shop/orders.py": FILES["shop/orders.py"] + "\n\ndef refund_all(x):\n    return x\n",
                                     "shop/extra.py": "class ExtraThing:\n    def go(self):\n        return 1\n"},
                         delete=["README.md"], rename={"shop/inventory.py": "shop/stock.py"})

    def whole(commit: str) -> dict:
        files = ws.scan(commit).files
        return index_cache._keyed(files, index_cache.entries_of(files))

    before, now = whole(head), whole(after)
    kept = {key: entry for key, entry in before.values()}
    rescanned = {p for p in before.keys() | now.keys() if before.get(p, (None,))[0] != now.get(p, (None,))[0]}
    assert {"shop/orders.py", "shop/extra.py", "README.md", "shop/inventory.py", "shop/stock.py"} <= rescanned
    patched = index_cache.IndexSummary.of(before).patched(rescanned, {p: now[p] for p in rescanned if p in now},
                                                             kept.get)
    assert patched == index_cache.IndexSummary.of(now)
    assert "refund_all" in patched.names and "ExtraThing" in patched.names
    # An old entry that is no longer kept cannot be taken out: the caller scans again instead.
    assert index_cache.IndexSummary.of(before).patched(rescanned, {}, lambda key: None) is None
    # Nor can one the summary does not hold (another commit's): no count goes below zero.
    stranger = FileEntry(frozenset({"NotInTheRepo"}), frozenset())
    assert index_cache.IndexSummary.of(before).patched({"shop/orders.py"}, {}, lambda key: stranger) is None

def test_kept_index_holds_definition_names_with_whitespace_and_backslashes() -> None:
    # TypeScript allows whitespace inside a dotted namespace name and any string as a module name; qualified
    # names keep them as written, so a tab or newline in one must not be taken for the kept summary's separators.
    text = ("namespace A.\n  B {\n  export function f() {}\n}\n"
            'declare module "x\ty" {\n  export function g(): void;\n}\n'
            r'declare module "C:\tmp\new\\" {' "\n  export function h(): void;\n}\n")
    entries = index_cache.entries_of([SourceFile("a.ts", "typescript", text, "blob")])
    qualified = {q for q, _ in entries["a.ts"].definitions}
    assert {"A.\n  B.f", "x\ty.g", r"C:\tmp\new\\.h"} <= qualified
    summary = index_cache.IndexSummary.of({"a.ts": ("key", entries["a.ts"])})
    kept = index_cache.IndexSummary.from_json(marshal.loads(marshal.dumps(summary.to_json())))  # as SummaryStore
    assert dict(kept.index(lambda path: frozenset()).definitions) == dict(RepoIndex.from_entries(entries).definitions)
