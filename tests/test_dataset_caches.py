"""The caches kept per output directory are removed once that directory is gone (dataset_caches.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from codefactory import dataset_caches, pipeline
from codefactory.dataset_caches import dataset_tag, prune
from tests.planted import billing_repo, responder
from tests.planted import workspace as planted_workspace
from tests.servers import ScriptedServer


def _tagged_files(root: Path, tag: str) -> list[str]:
    return sorted(f.name for d in dataset_caches.TAGGED_DIRS if (root / d).is_dir() for f in (root / d).iterdir()
                  if tag in f.name)


def test_a_run_removes_what_runs_kept_for_a_deleted_output_directory(
        tmp_path: Path, scripted_server: ScriptedServer) -> None:
    root = billing_repo(tmp_path)
    responder(scripted_server)
    first = planted_workspace(root, scripted_server, out=str(tmp_path / "first"))
    assert not pipeline.run_build(first).failed
    cache_root = first.cache_dir.parent
    first_tag = dataset_tag(first.out)
    kept = _tagged_files(cache_root, first_tag)
    # what the next run of `first` would take up: raw-log indexes, facts and MinHash signatures
    assert any(name.startswith("scene1-") for name in kept), kept
    assert any(name.startswith("facts-") for name in kept) and any(name.startswith("minhash-") for name in kept)

    second = planted_workspace(root, scripted_server, out=str(tmp_path / "second"))
    assert not pipeline.run_build(second).failed
    assert _tagged_files(cache_root, first_tag) == kept  # `first` still exists: its caches stay

    shutil.rmtree(first.out)
    assert not pipeline.run_build(second).failed
    assert _tagged_files(cache_root, first_tag) == []
    assert not (cache_root / dataset_caches.RECORDS_DIR / first_tag).exists()
    assert _tagged_files(cache_root, dataset_tag(second.out))  # the run's own are kept
    assert (cache_root / "quality" / "entries").is_dir()  # shared by every dataset: not a tagged cache


def test_caches_nobody_recorded_are_removed_and_other_files_are_left_alone(tmp_path: Path) -> None:
    root, out, other = tmp_path / ".codefactory", tmp_path / "data", tmp_path / "other"
    out.mkdir()
    other.mkdir()
    own, others, unrecorded = dataset_tag(out), dataset_tag(other), "0123456789ab"
    assert prune(root, other) == prune(root, out) == []  # each records itself
    for tag in (own, others, unrecorded):
        for name in (f"quality/facts-{tag}.marshal", f"quality/minhash-{tag}.npz", f"rawlog/scene2-{tag}.marshal"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"kept")
    (root / "quality" / "index").mkdir()
    (root / "quality" / f".minhash-{unrecorded}.npz.123.tmp.npz").write_bytes(b"")  # another run's temp files
    (root / dataset_caches.RECORDS_DIR / f".{unrecorded}.123.x.tmp").write_text("/gone", encoding="utf-8")

    removed = prune(root, out)

    assert sorted(p.name for p in removed) == sorted(
        [f"facts-{unrecorded}.marshal", f"minhash-{unrecorded}.npz", f"scene2-{unrecorded}.marshal"])
    assert len(_tagged_files(root, own)) == len(_tagged_files(root, others)) == 3
    assert (root / "quality" / "index").is_dir()
    assert (root / "quality" / f".minhash-{unrecorded}.npz.123.tmp.npz").exists()
    assert (root / dataset_caches.RECORDS_DIR / own).read_text(encoding="utf-8") == str(out.resolve())

    other.rmdir()
    assert {p.name for p in prune(root, out)} == {f"facts-{others}.marshal", f"minhash-{others}.npz",
                                                 f"scene2-{others}.marshal"}
    assert sorted(p.name for p in (root / dataset_caches.RECORDS_DIR).iterdir()) == [f".{unrecorded}.123.x.tmp", own]


def test_where_no_record_can_be_written_nothing_is_removed_and_nothing_raised(tmp_path: Path) -> None:
    root = tmp_path / ".codefactory"
    (root / "quality").mkdir(parents=True)
    (root / "quality" / "facts-0123456789ab.marshal").write_bytes(b"kept")
    (root / dataset_caches.RECORDS_DIR).write_bytes(b"")  # a file where the records' directory belongs

    assert prune(root, tmp_path / "data") == []
    assert (root / "quality" / "facts-0123456789ab.marshal").exists()
