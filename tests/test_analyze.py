"""analyze_files: worker processes give exactly what the serial path gives."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from codefactory import snapshot, workers
from codefactory.analyze import Analysis, analyze_files, scan_and_analyze
from codefactory.chunk import chunk_files
from codefactory.config import load_config
from codefactory.gitrepo import GitRepo
from codefactory.models import SourceFile
from codefactory.scan import scan, select
from codefactory.skeleton import compute_centrality, extract_symbols, file_refs
from codefactory.workers import worker_count
from tests.gitrepos import make_repo


def stdlib_files() -> list[SourceFile]:
    import json as json_package

    root = Path(json_package.__file__).parent.parent
    names = ["json/decoder.py", "json/encoder.py", "json/__init__.py", "textwrap.py", "shlex.py", "csv.py"]
    return [SourceFile(path=n, language="python", text=(root / n).read_text(encoding="utf-8"), blob_sha=str(i))
            for i, n in enumerate(names)] + [SourceFile(path="README.md", language="text", text="# x\n" * 50, blob_sha="r")]


def sizes(files: list[SourceFile]) -> list[int]:
    return [len(f.text) for f in files]


def as_json(analysis: Analysis) -> str:
    return json.dumps([[c.to_dict() for c in analysis.chunks], [c.json_element.decode() for c in analysis.chunks],
                       sorted((p, repr(s)) for p, s in analysis.symbols.items()),
                       sorted((p, repr(r)) for p, r in analysis.refs.items())])


def test_forked_workers_match_the_serial_path() -> None:
    files = stdlib_files()
    if threading.active_count() > 1:
        pytest.skip("another thread is running: analyze_files stays serial (fork would be unsafe)")
    assert worker_count(sizes(files), 2, 0) == 2
    forked = analyze_files(files, max_tokens=300, min_tokens=40, workers=2, min_chars=0)
    # made by the workers, not left for the parent to make one after the other
    assert all({"json_element", "section"} <= vars(s).keys() for s in forked.symbols.values() if s.symbols)
    assert all("json_element" in vars(c) for c in forked.chunks)
    serial = analyze_files(files, max_tokens=300, min_tokens=40, workers=1)
    assert as_json(forked) == as_json(serial)
    assert [c.to_dict() for c in serial.chunks] == [c.to_dict() for c in chunk_files(files, max_tokens=300, min_tokens=40)]
    assert serial.symbols["csv.py"] == extract_symbols(files[5])
    assert serial.refs["csv.py"] == file_refs(files[5])
    assert [c.to_dict() for c in serial.chunks] == [dataclasses.asdict(c) for c in serial.chunks]


def test_a_large_tree_is_counted_by_gigatoken_into_the_same_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from codefactory import analyze, tokens

    files = stdlib_files()
    monkeypatch.setattr(tokens, "_bulk", None)
    everyday = analyze_files(files, max_tokens=300, min_tokens=40, workers=1)
    assert tokens._bulk is None  # a few files' text: bpe-openai, quicker to start
    monkeypatch.setattr(analyze, "BULK_COUNT_MIN_CHARS", sum(sizes(files)))  # as much text as a large tree
    bulk = analyze_files(files, max_tokens=300, min_tokens=40, workers=1)
    assert isinstance(tokens._bulk, tokens._GigatokenCounter)
    assert as_json(bulk) == as_json(everyday)
    if threading.active_count() > 1:
        pytest.skip("another thread is running: fork would be unsafe")
    # forked: a head start counts with bpe-openai while gigatoken loads, the pool with gigatoken
    monkeypatch.setattr(tokens, "_bulk", None)
    forked = analyze_files(files, max_tokens=300, min_tokens=40, workers=2, min_chars=0)
    assert isinstance(tokens._bulk, tokens._GigatokenCounter)
    assert as_json(forked) == as_json(everyday)


def test_small_trees_and_running_threads_stay_serial() -> None:
    files = stdlib_files()
    assert worker_count(sizes(files), 8, 10**9) == 1
    assert worker_count(sizes(files[:1]), 8, 0) == 1
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert worker_count(sizes(files), 8, 0) == 1
    finally:
        stop.set()
        thread.join()


def test_every_usable_core_is_used_whatever_the_load() -> None:
    """The load average lags (it still counts what ran a minute ago), so it does not cut the workers."""
    files = stdlib_files()
    if threading.active_count() > 1:
        pytest.skip("another thread is running: analyze_files stays serial (fork would be unsafe)")
    cores = len(os.sched_getaffinity(0))
    assert workers.usable_cores() == cores
    assert worker_count(sizes(files), None, 0) == (min(cores, workers._MAX_WORKERS) if cores > 1 else 1)


def test_centrality_from_forked_workers_matches_the_serial_path() -> None:
    files = stdlib_files()
    if threading.active_count() > 1:
        pytest.skip("another thread is running: the scan of names stays serial (fork would be unsafe)")
    symbols = [extract_symbols(f) for f in files]
    forked = compute_centrality(files, symbols, workers=2, min_chars=0)
    assert forked == compute_centrality(files, symbols, workers=1)
    assert forked["json/decoder.py"] > 0, "json/__init__.py imports the decoder: a score that can be lost"


def test_one_pass_scan_and_analysis_match_scan_then_analyze(tmp_path: Path) -> None:
    files = {f.path: f.text for f in stdlib_files()}
    files["settings.py"] = 'API_KEY = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789"\n\ndef f():\n    return 1\n'
    files["logo.png"] = b"\x89PNG\r\n\x1a\n\x00\x00"
    files["blob.bin.txt"] = b"\x00\x01binary"
    make_repo(tmp_path / "r", files)
    repo = GitRepo(tmp_path / "r")
    expected = scan(repo)
    analysis = analyze_files(expected.files, max_tokens=300, min_tokens=40, workers=1)
    for count in (1, 2):
        if count == 2 and threading.active_count() > 1:
            continue
        result, one_pass = scan_and_analyze(select(repo), max_tokens=300, min_tokens=40, workers=count, min_chars=0)
        assert result == expected
        assert as_json(one_pass) == as_json(analysis)
    assert "<REDACTED:" in next(f.text for f in result.files if f.path == "settings.py")
    assert {s.path: s.reason for s in result.skipped} == {"logo.png": "binary", "blob.bin.txt": "binary"}


def test_the_workers_share_the_secret_rules_the_parent_built_before_forking(tmp_path: Path) -> None:
    from codefactory import secrets

    if threading.active_count() > 1:
        pytest.skip("another thread is running: the scan stays serial (fork would be unsafe)")
    files = {f.path: f.text for f in stdlib_files()}
    files["settings.py"] = 'API_KEY = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789"\n'
    make_repo(tmp_path / "r", files)
    secrets._rules.cache_clear()
    unredacted, _ = scan_and_analyze(select(GitRepo(tmp_path / "r")), max_tokens=300, min_tokens=40,
                                     redact_secrets=False, workers=2, min_chars=0)
    assert secrets._rules.cache_info().currsize == 0, "nothing to redact: no rules built"
    result, _ = scan_and_analyze(select(GitRepo(tmp_path / "r")), max_tokens=300, min_tokens=40, workers=2,
                                 min_chars=0)
    # Only the workers scan lines for secrets: built in the parent, the rules were built before the fork.
    assert secrets._rules.cache_info().currsize == 1
    assert "<REDACTED:" in next(f.text for f in result.files if f.path == "settings.py")
    assert "<REDACTED:" not in next(f.text for f in unredacted.files if f.path == "settings.py")


def test_batches_cover_every_item_once_and_shrink_toward_the_end() -> None:
    sizes = [10_000_000] * 3 + [100] * 5000  # a few huge files, then thousands of tiny ones
    batches = workers._batches(sizes, 2)
    assert sorted(i for batch in batches for i in batch) == list(range(len(sizes)))
    assert batches[0] == [0], "largest first"

    def cost(batch: list[int]) -> int:
        return sum(sizes[i] + workers._ITEM_COST for i in batch)

    assert len(batches) > 6
    assert cost(batches[-1]) < cost(batches[0]) / 4, "no large batch left for one worker at the end"


def test_fork_map_turns_garbage_collection_back_on() -> None:
    if threading.active_count() > 1:
        pytest.skip("another thread is running: fork would be unsafe")
    assert gc.isenabled()
    assert workers.fork_map(lambda i: (i, gc.isenabled()), [1, 2, 3], 2) == [(0, False), (1, False), (2, False)]
    assert gc.isenabled(), "the caller's collector is on again"


def test_what_a_kept_pause_made_is_left_out_of_later_collections() -> None:
    frozen = gc.get_freeze_count()
    try:
        with workers.paused_gc(kept=True):
            assert not gc.isenabled()
            made = [[i] for i in range(1000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(made), "frozen: no collection walks them again"
        kept = gc.get_freeze_count()
        with workers.paused_gc():
            made.append([0])
        assert gc.get_freeze_count() == kept, "a plain pause freezes nothing"
    finally:
        gc.unfreeze()  # the test process as it was


_set_up: list[str] = []


def _slow_set_up() -> None:  # slow to build, as gigatoken is
    time.sleep(0.3)
    _set_up.append("built")


def _set_up_job(i: int) -> tuple[int, int, bool]:
    """(item, the process that computed it, whether the set-up had run there)."""
    return i, os.getpid(), bool(_set_up)


def test_a_head_start_takes_the_smallest_items_while_the_set_up_runs() -> None:
    if threading.active_count() > 1:
        pytest.skip("another thread is running: fork would be unsafe")
    sizes = [workers._HEAD_START_MAX_SIZE * 2] * 4 + [10 + i for i in range(400)]
    try:
        results = workers.fork_map(_set_up_job, sizes, 2, setup=_slow_set_up)
    finally:
        _set_up.clear()
    assert [i for i, _, _ in results] == list(range(len(sizes)))
    early = [i for i, pid, built in results if not built]
    assert early, "some items were done while the set-up ran"
    assert early == list(range(4, 4 + len(early))), "the smallest first, one by one"
    assert len({pid for _, pid, built in results if not built}) == 1
    assert all(built for i, _, built in results[:4]), "never an item that could keep the pool waiting"
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every process forked is gone


def _unpicklable_before_set_up(i: int) -> Any:
    return (lambda: i) if not _set_up else i


def test_what_a_head_start_fails_to_hand_back_is_computed_all_the_same() -> None:
    if threading.active_count() > 1:
        pytest.skip("another thread is running: fork would be unsafe")
    try:  # the head start finishes items, then cannot send their results back
        assert workers.fork_map(_unpicklable_before_set_up, [10] * 50, 2, setup=_slow_set_up) == list(range(50))
    finally:
        _set_up.clear()

    def failing_set_up() -> None:
        raise RuntimeError("no tokenizer")

    with pytest.raises(RuntimeError, match="no tokenizer"):
        workers.fork_map(_set_up_job, [10] * 50, 2, setup=failing_set_up)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def _result_directories() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("codefactory-results-")}


def test_results_come_back_through_files_or_the_pipe_and_leave_nothing_behind(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if threading.active_count() > 1:
        pytest.skip("another thread is running: fork would be unsafe")
    before = _result_directories()
    sizes = [10] * 40
    expected = [(i, "x" * i) for i in range(40)]

    def with_directory(i: int) -> tuple[int, bool]:  # in the worker: where it writes its batch's results
        return i, workers._handoff is not None and os.path.isdir(workers._handoff)

    assert workers.fork_map(with_directory, sizes, 2) == [(i, True) for i in range(40)]
    assert workers.fork_map(lambda i: (i, "x" * i), sizes, 2) == expected
    assert _result_directories() == before, "the results' files and their directory are removed"

    def directory_gone(i: int) -> tuple[int, str]:  # a worker that cannot write its file: through the pipe
        if workers._handoff is not None:
            shutil.rmtree(workers._handoff, ignore_errors=True)
        return i, "x" * i

    assert workers.fork_map(directory_gone, sizes, 2) == expected

    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a-file" / "tmp"))  # no temporary directory at all
    assert workers.fork_map(lambda i: (i, "x" * i), sizes, 2) == expected
    monkeypatch.undo()

    def failing(i: int) -> tuple[int, str]:
        raise ValueError(f"item {i}")

    with pytest.raises(ValueError):
        workers.fork_map(failing, sizes, 2)
    assert _result_directories() == before, "removed when a worker fails too"


def test_outputs_from_forked_workers_are_the_bytes_json_would_write(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """chunks.json and project_skeleton.json are joined from JSON the workers encoded: same bytes as json.dumps."""
    if threading.active_count() > 1:
        pytest.skip("another thread is running: the analysis stays serial (fork would be unsafe)")
    files = {f.path: f.text for f in stdlib_files()}
    make_repo(tmp_path / "r", files)
    config = load_config(tmp_path / "r", flags={"out": str(tmp_path / "out")}, environ={})
    ws = snapshot.Workspace(GitRepo(tmp_path / "r"), config, progress=False)
    collecting: list[bool] = []

    def two_workers(*args: Any, **kwargs: Any) -> Any:  # even for these few files
        collecting.append(gc.isenabled())
        return scan_and_analyze(*args, workers=2, min_chars=0, **kwargs)

    monkeypatch.setattr(snapshot, "scan_and_analyze", two_workers)
    taken = snapshot.take_snapshot(ws)
    assert collecting == [False] and gc.isenabled(), "no cyclic collections during the snapshot, and on again after"
    assert all("json_element" in vars(c) for c in taken.chunks), "encoded in the workers"
    chunks_file = snapshot.write_chunks(ws, taken.chunks)
    expected = json.dumps([c.to_dict() for c in taken.chunks], ensure_ascii=False, indent=2) + "\n"
    assert chunks_file.read_text(encoding="utf-8") == expected
    _, skeleton_file = snapshot.write_skeleton(ws, taken.skeleton)
    expected = json.dumps(taken.skeleton.to_dict(), ensure_ascii=False, indent=2) + "\n"
    assert skeleton_file.read_text(encoding="utf-8") == expected
    assert json.loads(expected)["files"][0]["symbols"], "symbols made it into the file"
