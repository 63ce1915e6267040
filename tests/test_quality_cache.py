"""Quality assessment kept between runs (quality_cache.py, index_cache.py) equals assessment from scratch."""

from __future__ import annotations

import json
from pathlib import Path

from codefactory import index_cache, pipeline, quality_cache
from codefactory.fileio import append_jsonl
from codefactory.quality import QualitySettings, assess, assess_dataset
from codefactory.store import DatasetStore
from tests.planted import PLANTED, billing_repo, responder
from tests.planted import workspace as planted_workspace
from tests.servers import ScriptedServer
from tests.test_index_cache import _old_index


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

    index_cache._MEMO.clear()  # from the files the build left
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
                    *(quality_cache.quality_cache_dir(ws) / index_cache.INDEX_DIR).iterdir()]:
        damaged.write_bytes(b"\xff\x00garbage")
    index_cache._MEMO.clear()
    assert assess_dataset(ws, store, commit).to_dict() == fresh
    # Similarities are kept for pairs of live texts only, by the texts' digests.
    pairs = quality_cache.SignatureStore(ws)
    entries = pairs.load()
    first, second = sorted(str(entries.digest(i)).partition(":")[2] for i in sorted(entries)[:2])
    pairs.similarities.update({(first, second): 0.25, (first, "f" * 40): 0.5})
    pairs.save(set(entries))
    again = quality_cache.SignatureStore(ws)
    again.load()
    assert again.similarities == {(first, second): 0.25}


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
