"""analyze_files: worker processes give exactly what the serial path gives."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

import pytest

from codefactory import workers
from codefactory.analyze import analyze_files
from codefactory.chunk import chunk_files
from codefactory.models import SourceFile
from codefactory.skeleton import extract_symbols
from codefactory.workers import worker_count


def stdlib_files() -> list[SourceFile]:
    import json as json_package

    root = Path(json_package.__file__).parent.parent
    names = ["json/decoder.py", "json/encoder.py", "json/__init__.py", "textwrap.py", "shlex.py", "csv.py"]
    return [SourceFile(path=n, language="python", text=(root / n).read_text(encoding="utf-8"), blob_sha=str(i))
            for i, n in enumerate(names)] + [SourceFile(path="README.md", language="text", text="# x\n" * 50, blob_sha="r")]


def sizes(files: list[SourceFile]) -> list[int]:
    return [len(f.text) for f in files]


def as_json(result: tuple) -> str:
    chunks, symbols = result
    return json.dumps([[c.to_dict() for c in chunks], sorted((p, repr(s)) for p, s in symbols.items())])


def test_forked_workers_match_the_serial_path() -> None:
    files = stdlib_files()
    if threading.active_count() > 1:
        pytest.skip("another thread is running: analyze_files stays serial (fork would be unsafe)")
    assert worker_count(sizes(files), 2, 0) == 2
    forked = analyze_files(files, max_tokens=300, min_tokens=40, workers=2, min_chars=0)
    serial = analyze_files(files, max_tokens=300, min_tokens=40, workers=1)
    assert as_json(forked) == as_json(serial)
    assert [c.to_dict() for c in serial[0]] == [c.to_dict() for c in chunk_files(files, max_tokens=300, min_tokens=40)]
    assert serial[1]["csv.py"] == extract_symbols(files[5])
    assert [c.to_dict() for c in serial[0]] == [dataclasses.asdict(c) for c in serial[0]]


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
