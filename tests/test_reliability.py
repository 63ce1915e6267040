"""Faults, crashes, Ctrl-C and concurrent runs, each through a real `python -m codefactory` process.

Every run here talks to a scripted OpenAI-compatible server on loopback (tests/servers.py). The
reference for the crash tests is an uninterrupted run of the same command on a copy of the same
repository; a crashed-then-resumed run must end with the same live samples and the same SFT bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codefactory.fileio import TEST_KILL_ENV
from codefactory.lock import LOCK_NAME, output_lock
from tests.cli_runs import (
    OUT_FILES,
    ChatFaultServer,
    assert_consistent,
    cli_env,
    codefactory,
    live_ids,
    make_project,
    read_lines,
    start_codefactory,
    wait_for,
)
from tests.gitrepos import commit_files
from tests.servers import Fault

import pygit2

MODULES = 6  # 12 function chunks (+ the README window)
BUILD = ("build", "--qa-count", "2", "--count", "1")
BUILD_REQUESTS = 14  # 13 chunks and 1 proposal


@pytest.fixture(scope="module")
def server() -> Iterator[ChatFaultServer]:
    with ChatFaultServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _calm(server: ChatFaultServer) -> Iterator[None]:
    """Each test starts with no script and no latency, whatever the one before left."""
    server.script()
    server.latency = 0.0
    yield
    server.script()
    server.latency = 0.0
    server.gate.set()


def settings(server: ChatFaultServer, **extra: str | float | int) -> dict[str, str]:
    defaults: dict[str, str | float | int] = {
        "CODEFACTORY_BASE_URL": server.base_url, "CODEFACTORY_MODEL": "scripted-model",
        "CODEFACTORY_LLM_RESPONSE_FORMAT": "json_schema", "CODEFACTORY_CONCURRENCY": 2}
    return cli_env(**{**defaults, **extra})


# -- faults -------------------------------------------------------------------------------------------------

# One step per server answer to a chat request, in order; None answers normally. With one request at a
# time and 2 retries (3 attempts) per request, this is what each request meets:
FAULT_SCRIPT: tuple[Fault | str | None, ...] = (
    Fault("429", retry_after=0.2), None,  # 1: rate limited with Retry-After, then fine
    "429", "500", None,  # 2: rate limited without Retry-After, a 500, then fine
    "502", "503", "hang",  # 3: fails: 502, 503, then a timeout (retries exhausted)
    "reset", "close", None,  # 4: connection reset, connection closed, then fine
    "not_json", None,  # 5: a 200 whose body is an HTML page, asked again: fine
    "bad_schema", "bad_schema",  # 6: fails: JSON that breaks the schema, also after the re-ask
    "length", "empty_choices",  # 7: fails: cut off at the token limit, then no choices
    "empty_choices", None,  # 8: no choices, asked again: fine
    "length", None,  # 9: cut off, asked again: fine
    "bad_schema", None,  # 10: breaks the schema, re-asked with the error: fine
)
FAULT_KINDS_MET = {f.kind if isinstance(f, Fault) else f for f in FAULT_SCRIPT} - {None}
EXPECTED_FAILURES = ("timeout after 2 retries (3 s each)", "invalid reply after one re-ask", "empty choices, also when asked again")


def test_a_run_meeting_every_fault_keeps_every_finished_sample(tmp_path: Path, server: ChatFaultServer) -> None:
    repo = make_project(tmp_path / "ledger", MODULES)
    env = settings(server, CODEFACTORY_CONCURRENCY=1, CODEFACTORY_LLM_MAX_RETRIES=2, CODEFACTORY_LLM_TIMEOUT=3)
    server.hang_seconds = 5.0
    server.script(*FAULT_SCRIPT)
    assert FAULT_KINDS_MET == {"429", "500", "502", "503", "hang", "reset", "close", "not_json", "bad_schema",
                               "length", "empty_choices"}

    first = codefactory(repo, "scene1", "--qa-count", "1", env=env)

    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    failed = [line for line in first.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 3, first.stderr
    for reason in EXPECTED_FAILURES:
        assert sum(reason in line for line in failed) == 1, (reason, failed)
    assert "3 requests failed" in first.stderr and "run the same command again" in first.stderr
    assert re.search(r"scene1 at \w+: 10 samples from 13 requests .*failed 3", first.stderr), first.stderr
    out = repo / "data"
    assert_consistent(out)
    finished = live_ids(out)
    assert len(finished) == 10 and not server.faults

    # A second run asks only for what failed, and then everything is there exactly once.
    before = len(server.chat_requests)
    second = codefactory(repo, "scene1", "--qa-count", "1", env=env)
    assert second.returncode == 0, second.stderr
    assert len(server.chat_requests) - before == 3
    assert_consistent(out)
    final = live_ids(out)
    assert len(final) == 13 and set(finished) <= set(final)
    assert sorted(r["id"] for r in read_lines(out / "scene1_raw.jsonl")) == sorted(final)


def test_exit_code_zero_when_retries_recover_everything(tmp_path: Path, server: ChatFaultServer) -> None:
    repo = make_project(tmp_path / "ledger", 2)
    env = settings(server, CODEFACTORY_CONCURRENCY=1, CODEFACTORY_LLM_MAX_RETRIES=2, CODEFACTORY_LLM_TIMEOUT=10)
    server.script(Fault("503", retry_after=0.1), "reset", None, "not_json", None, "length", None, "empty_choices",
                  None, "bad_schema", None)

    result = codefactory(repo, "scene1", "--qa-count", "1", env=env)

    assert result.returncode == 0, result.stderr
    assert "failed 0" in result.stderr and "failed:" not in result.stderr
    assert not server.faults
    assert len(live_ids(repo / "data")) == 5


# -- crashes ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project repository that the crash tests copy (same commits, same name, no cache yet)."""
    return make_project(tmp_path_factory.mktemp("template") / "ledger", MODULES)


@pytest.fixture(scope="module")
def reference(template: Path, server: ChatFaultServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of an uninterrupted build."""
    repo = _copy(template, tmp_path_factory.mktemp("reference"))
    result = codefactory(repo, *BUILD, env=settings(server))
    assert result.returncode == 0, result.stderr
    return repo / "data"


def _copy(template: Path, parent: Path) -> Path:
    return Path(shutil.copytree(template, parent / template.name, symlinks=True))


def assert_same_dataset(out: Path, reference: Path) -> None:
    assert_consistent(out)
    assert live_ids(out) == live_ids(reference)
    for name in OUT_FILES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    manifest, expected = (json.loads((d / "manifest.json").read_text()) for d in (out, reference))
    assert manifest["counts"] == expected["counts"] and manifest["dataset_version"] == expected["dataset_version"] == 1


@pytest.mark.parametrize("point", [
    "torn-append:scene1_raw.jsonl",  # generating: a batch of samples is torn in half as it is written
    "torn-append:versions.jsonl",  # committing the version: its changelog line is torn
    "before-replace:scene1_sft.jsonl",  # rebuilding: nothing of the SFT files renamed into place yet
    "before-replace:combined_sft.jsonl",  # rebuilding: scene files new, the combined file still old
    "before-replace:manifest.json",  # rebuilding: every SFT file new, the manifest not
])
def test_sigkill_while_writing_then_rerun_gives_the_same_dataset(
    point: str, template: Path, reference: Path, server: ChatFaultServer, tmp_path: Path
) -> None:
    repo = _copy(template, tmp_path)
    killed = codefactory(repo, *BUILD, env=settings(server, **{TEST_KILL_ENV: point}))
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    resumed = codefactory(repo, *BUILD, env=settings(server))

    assert resumed.returncode == 0, resumed.stderr
    assert_same_dataset(repo / "data", reference)


@pytest.mark.parametrize("after_requests", [1, 6])
def test_sigkill_during_generation_then_rerun_gives_the_same_dataset(
    after_requests: int, template: Path, reference: Path, server: ChatFaultServer, tmp_path: Path
) -> None:
    repo = _copy(template, tmp_path)
    server.latency = 0.2
    start = len(server.chat_requests)
    process = start_codefactory(repo, *BUILD, env=settings(server))
    wait_for(lambda: len(server.chat_requests) - start >= after_requests, what=f"{after_requests} requests")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    server.latency = 0.0
    assert process.returncode == -signal.SIGKILL
    asked = len(server.chat_requests) - start

    resumed = codefactory(repo, *BUILD, env=settings(server))

    assert resumed.returncode == 0, resumed.stderr
    assert_same_dataset(repo / "data", reference)
    # Every reply that arrived before the kill was cached, and not asked for again.
    resent = len(server.chat_requests) - start - asked
    assert resent <= BUILD_REQUESTS - (asked - 2), (asked, resent)  # at most the 2 in flight were lost


def test_sigkill_during_an_incremental_run(template: Path, server: ChatFaultServer, tmp_path: Path) -> None:
    runs = {}
    for name, point in (("reference", None), ("crashed", "torn-append:versions.jsonl")):
        repo = _copy(template, tmp_path / name)
        assert codefactory(repo, *BUILD, env=settings(server)).returncode == 0
        commit_files(pygit2.Repository(str(repo)), {"ledger/part0.py": "def audit(entries):\n    return [e for e in entries if e]\n",
                                                     "ledger/fees.py": FEES})
        if point is not None:
            killed = codefactory(repo, "incremental", env=settings(server, **{TEST_KILL_ENV: point}))
            assert killed.returncode == -signal.SIGKILL
        result = codefactory(repo, "incremental", env=settings(server))
        assert result.returncode == 0, result.stderr
        runs[name] = repo / "data"
    assert_consistent(runs["crashed"])
    assert live_ids(runs["crashed"]) == live_ids(runs["reference"])
    for name in OUT_FILES:
        assert (runs["crashed"] / name).read_bytes() == (runs["reference"] / name).read_bytes(), name
    assert [len(v["added"]) for v in read_lines(runs["crashed"] / "versions.jsonl")] == \
        [len(v["added"]) for v in read_lines(runs["reference"] / "versions.jsonl")]


FEES = '''"""Fees charged on transfers."""


def fee_for(amount: float, premium: bool) -> float:
    """Premium accounts pay half the fee; no fee is below one cent."""
    rate = 0.005 if premium else 0.01
    return max(round(amount * rate, 2), 0.01)
'''


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(
    template: Path, reference: Path, server: ChatFaultServer, tmp_path: Path
) -> None:
    repo = _copy(template, tmp_path)
    server.latency = 0.3
    start = len(server.chat_requests)
    process = start_codefactory(repo, *BUILD, env=settings(server))
    wait_for(lambda: len(server.chat_requests) - start >= 3, what="3 requests")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    server.latency = 0.0

    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert not (repo / "data" / LOCK_NAME).exists()
    resumed = codefactory(repo, *BUILD, env=settings(server))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_dataset(repo / "data", reference)


# -- one writer ---------------------------------------------------------------------------------------------


def test_a_second_run_on_the_same_output_refuses_naming_the_first(
    template: Path, server: ChatFaultServer, tmp_path: Path
) -> None:
    repo = _copy(template, tmp_path)
    server.gate.clear()  # the first run's requests wait until both others have been refused
    start = len(server.chat_requests)
    first = start_codefactory(repo, *BUILD, env=settings(server))
    lock = repo / "data" / LOCK_NAME
    wait_for(lambda: len(server.chat_requests) > start, what="the first run's first request")
    assert lock.read_text().strip() == str(first.pid)

    try:
        second = codefactory(repo, *BUILD, env=settings(server))
        incremental = codefactory(repo, "incremental", env=settings(server))
    finally:
        server.gate.set()

    for refused in (second, incremental):
        assert refused.returncode == 2
        message = refused.stderr.strip()
        assert "\n" not in message and "Traceback" not in message
        assert f"another codefactory run (pid {first.pid}) is writing to {repo / 'data'}" in message
        assert "lock_timeout" in message
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert not lock.exists()
    assert_consistent(repo / "data")


def test_with_lock_timeout_a_second_run_waits(template: Path, server: ChatFaultServer, tmp_path: Path) -> None:
    repo = _copy(template, tmp_path)
    out = repo / "data"
    with output_lock(out):
        started = time.monotonic()
        waiting = start_codefactory(repo, *BUILD, env=settings(server, CODEFACTORY_LOCK_TIMEOUT=60))
        time.sleep(3.0)
        assert waiting.poll() is None, "the second run did not wait for the lock"
    _, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, stderr
    assert time.monotonic() - started >= 3.0
    assert_consistent(out)


def test_a_stale_lock_of_a_killed_run_does_not_block(template: Path, server: ChatFaultServer, tmp_path: Path) -> None:
    repo = _copy(template, tmp_path)
    server.latency = 0.3
    start = len(server.chat_requests)
    process = start_codefactory(repo, *BUILD, env=settings(server))
    wait_for(lambda: len(server.chat_requests) - start >= 2, what="2 requests")
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    server.latency = 0.0
    lock = repo / "data" / LOCK_NAME
    assert lock.read_text().strip() == str(process.pid)  # left behind, naming a dead process

    result = codefactory(repo, *BUILD, env=settings(server))

    assert result.returncode == 0, result.stderr
    assert not lock.exists()


def test_output_lock_is_reentrant_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "fresh" / "data"
    with output_lock(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        with output_lock(out):  # a command holds it, the library functions it calls take it again
            pass
        assert (out / LOCK_NAME).exists()
    assert not out.exists()  # only the lock had created it

    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    with output_lock(out):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_dead_writers_temp_file_is_swept_but_a_live_ones_is_not(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".manifest.json.{dead.pid}.abcd1234.tmp"
    live = out / f".manifest.json.{os.getpid()}.efgh5678.tmp"
    for path in (stale, live):
        path.write_text("{")
    with output_lock(out):
        pass
    assert not stale.exists() and live.exists()
