"""Quality assessment kept between runs (quality_cache.py) equals assessment from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codefactory import pipeline, quality_cache
from codefactory.grounding import Definition, RepoIndex
from codefactory.fileio import append_jsonl
from codefactory.incremental import plan_update
from codefactory.quality import QualitySettings, assess, assess_dataset
from codefactory.scan import scan
from codefactory.skeleton import build_skeleton
from codefactory.store import DatasetStore
from tests.gitrepos import commit_files, make_repo
from tests.planted import PLANTED, billing_repo, responder
from tests.planted import workspace as planted_workspace
from tests.servers import ScriptedServer
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
    assert _view(RepoIndex.from_entries(quality_cache.entries_of(snapshot.scan.files, {
        s.path: s for s in snapshot.skeleton.files}))) == expected
    assert _view(RepoIndex.from_entries(quality_cache.scan_entries(ws, head))) == expected
    assert _view(quality_cache.repo_index_at(ws, head, snapshot)) == expected
    assert (quality_cache.quality_cache_dir(ws) / quality_cache.INDEX_DIR / f"{head}.marshal").is_file()

    # A commit that edits, adds, deletes and renames: the base's index patched with the rescanned files.
    after = commit_files(shop_repo, {"shop/orders.py": FILES["shop/orders.py"] + "\n\ndef refund_all(x):\n    return x\n",
                                     "shop/extra.py": "class ExtraThing:\n    def go(self):\n        return 1\n"},
                         delete=["README.md"], rename={"shop/inventory.py": "shop/stock.py"})
    plan = plan_update(ws, DatasetStore(ws.out), head, after)
    assert plan.snapshot.rescanned is not None
    quality_cache._MEMO.clear()
    patched = _view(quality_cache.repo_index_at(ws, after, plan.snapshot, head))
    assert patched == _view(_old_index(ws, after))
    quality_cache._MEMO.clear()
    assert _view(quality_cache.repo_index_at(ws, after)) == patched  # read back from the file


def test_cached_assessment_equals_a_fresh_one(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    root = billing_repo(tmp_path)
    responder(scripted_server)
    ws = planted_workspace(root, scripted_server)
    report = pipeline.run_build(ws)
    assert not report.failed
    store = DatasetStore(ws.out)
    commit = store.manifest()["source_commit"]
    samples = [s for s, _ in store.live_samples()]
    settings = QualitySettings.from_config(ws.config)
    fresh = assess(samples, _old_index(ws, commit), settings).to_dict()
    assert fresh["counts"]["dropped"] > 0  # the planted samples make the comparison mean something
    assert quality_cache.per_dataset(ws, quality_cache.SIGNATURES_FILE).is_file()

    quality_cache._MEMO.clear()  # from the files the build left
    assert assess_dataset(ws, store, commit).to_dict() == fresh
    assert json.loads((ws.out / "quality.json").read_text()) == json.loads(json.dumps(fresh))
    # A kept signature whose text changed is not used: hashing again gives the fresh verdicts.
    kept = quality_cache.SignatureStore(ws)
    entries = kept.load()
    some = sorted(entries)[0]
    entries[some] = ("affine32:" + "0" * 40, entries[sorted(entries)[1]][1])
    kept.save({s.id for s in samples} | {"new"})
    assert assess_dataset(ws, store, commit).to_dict() == fresh
    # Damaged kept files (a torn write, another Python's marshal) cost a recomputation, never the run.
    for damaged in [quality_cache.per_dataset(ws, quality_cache.FACTS_FILE),
                    *(quality_cache.quality_cache_dir(ws) / quality_cache.INDEX_DIR).iterdir()]:
        damaged.write_bytes(b"\xff\x00garbage")
    quality_cache._MEMO.clear()
    assert assess_dataset(ws, store, commit).to_dict() == fresh


def test_kept_facts_follow_a_later_judge_line_and_a_move_to_another_language(
        tmp_path: Path, scripted_server: ScriptedServer) -> None:
    root = billing_repo(tmp_path)
    responder(scripted_server)
    ws = planted_workspace(root, scripted_server, **{"quality.flagged": "keep", "scene1.qa_count": len(PLANTED)})
    assert not pipeline.run_build(ws).failed
    store = DatasetStore(ws.out)
    commit = store.manifest()["source_commit"]
    before = assess_dataset(ws, store, commit)
    assert quality_cache.per_dataset(ws, quality_cache.FACTS_FILE).is_file()
    kept = [i for i, v in before.verdicts.items() if v.scene == "scene1" and v.dropped is None]
    mismatched = next(i for i, v in before.verdicts.items() if v.dropped == "language_mismatch")

    # The judge appends a newer line for a sample (judge.py): its kept facts no longer hold.
    judged = store.read_raw("scene1", ids=[kept[0]])[kept[0]]
    judged.quality = {"judge": {"score": 1.0}}
    append_jsonl(store.raw_path("scene1"), [judged.to_record()])
    # A provenance move to a file of another language: validation sees that language (prose has none to
    # disagree with an answer that mentions JavaScript).
    moved = store.read_raw("scene1", ids=[mismatched])[mismatched]
    store.commit_version(from_commit=commit, to_commit=commit, added=[], retired=[],
                         moved={mismatched: {**moved.source, "path": "docs/billing.md", "language": "text"}})
    after = assess_dataset(ws, store, commit)
    assert after.verdicts[kept[0]].dropped == "judge_below_threshold"
    assert after.verdicts[mismatched].dropped != "language_mismatch"
    samples = [s for s, _ in store.live_samples()]
    assert after.to_dict() == assess(samples, _old_index(ws, commit), QualitySettings.from_config(ws.config)).to_dict()


def test_summary_patched_with_changed_files_equals_one_built_whole(shop_repo) -> None:
    root = Path(shop_repo.workdir)
    ws = workspace(root, None)
    head = ws.repo.head_commit()
    after = commit_files(shop_repo, {"shop/orders.py": FILES["shop/orders.py"] + "\n\ndef refund_all(x):\n    return x\n",
                                     "shop/extra.py": "class ExtraThing:\n    def go(self):\n        return 1\n"},
                         delete=["README.md"], rename={"shop/inventory.py": "shop/stock.py"})

    def whole(commit: str) -> dict:
        files = ws.scan(commit).files
        return quality_cache._keyed(files, quality_cache.entries_of(files))

    before, now = whole(head), whole(after)
    kept = {key: entry for key, entry in before.values()}
    rescanned = {p for p in before.keys() | now.keys() if before.get(p, (None,))[0] != now.get(p, (None,))[0]}
    assert {"shop/orders.py", "shop/extra.py", "README.md", "shop/inventory.py", "shop/stock.py"} <= rescanned
    patched = quality_cache.IndexSummary.of(before).patched(rescanned, {p: now[p] for p in rescanned if p in now},
                                                             kept.get)
    assert patched == quality_cache.IndexSummary.of(now)
    assert "refund_all" in patched.counts and "ExtraThing" in patched.counts
    # An old entry that is no longer kept cannot be taken out: the caller scans again instead.
    assert quality_cache.IndexSummary.of(before).patched(rescanned, {}, lambda key: None) is None
