"""Helpers for the reliability and security tests: a small project, real `python -m codefactory` runs,
and checks over every file a run may have written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.gitrepos import make_repo
from tests.servers import Fault, RecordedRequest, ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
OUT_FILES = ("scene1_sft.jsonl", "scene2_sft.jsonl", "combined_sft.jsonl")


def project_files(modules: int = 6) -> dict[str, str]:
    """`modules` Python files of two functions each: one chunk per function, distinct identifiers."""
    files = {"README.md": "# ledger\n\nA tiny ledger used by the reliability tests.\n"}
    for i in range(modules):
        files[f"ledger/part{i}.py"] = f'''"""Ledger part {i}: balances and transfers."""

LIMIT_{i} = {100 * (i + 1)}


def open_account_{i}(owner_{i}: str, deposit_{i}: float) -> dict:
    """Open an account for owner_{i} with an initial deposit; refuse negative deposits."""
    if deposit_{i} < 0:
        raise ValueError("deposit must not be negative")
    account_{i} = {{"owner": owner_{i}, "balance": deposit_{i}, "history": []}}
    account_{i}["history"].append(("open", deposit_{i}))
    return account_{i}


def transfer_{i}(source_{i}: dict, target_{i}: dict, amount_{i}: float) -> None:
    """Move amount_{i} between accounts unless it exceeds LIMIT_{i} or the source balance."""
    if amount_{i} > LIMIT_{i}:
        raise ValueError("over the transfer limit")
    if source_{i}["balance"] < amount_{i}:
        raise ValueError("insufficient funds")
    source_{i}["balance"] -= amount_{i}
    target_{i}["balance"] += amount_{i}
    source_{i}["history"].append(("out", amount_{i}))
    target_{i}["history"].append(("in", amount_{i}))
'''
    return files


def make_project(path: Path, modules: int = 6, extra: dict[str, str | bytes] | None = None) -> Path:
    make_repo(path, {**project_files(modules), **(extra or {})})
    return path


def cli_env(**settings: str | float | int) -> dict[str, str]:
    """The environment for a codefactory subprocess: none of the caller's keys or settings, plus `settings`
    (`CODEFACTORY_*` names, or OPENAI_API_KEY)."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("CODEFACTORY_") or k in ("OPENAI_API_KEY", "OPENAI_BASE_URL"))}
    env.update({k: str(v) for k, v in settings.items()})
    return env


def codefactory(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180,
                quiet: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m codefactory --repo REPO [-q] ARGS`; -q (no progress bars) unless `quiet` is false."""
    return subprocess.run([sys.executable, "-m", "codefactory", "--repo", str(repo), *(["-q"] if quiet else []), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env or cli_env(), timeout=timeout)


def start_codefactory(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "codefactory", "--repo", str(repo), "-q", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env or cli_env())


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, all of which must be whole and parse."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    assert not text or text.endswith("\n"), f"{path.name} ends in a torn line"
    return [json.loads(line) for line in text.splitlines()]


def live_ids(out: Path) -> list[str]:
    """Live sample ids, replayed from versions.jsonl."""
    live: dict[str, None] = {}
    for version in read_lines(out / "versions.jsonl"):
        for sample_id in version["retired"]:
            live.pop(sample_id, None)
        for sample_id in version["added"]:
            live.setdefault(sample_id)
    return list(live)


def assert_consistent(out: Path) -> None:
    """What any finished run leaves: whole lines, no duplicate sample, a parseable manifest that matches the
    changelog, every live sample in the raw logs, no temp file of an unfinished write."""
    for scene in ("scene1", "scene2"):
        ids = [r["id"] for r in read_lines(out / f"{scene}_raw.jsonl")]
        assert len(ids) == len(set(ids)), f"duplicate ids in {scene}_raw.jsonl"
    for name in OUT_FILES:
        read_lines(out / name)
    versions = read_lines(out / "versions.jsonl")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["dataset_version"] == (versions[-1]["version"] if versions else 0)
    raw_ids = {r["id"] for s in ("scene1", "scene2") for r in read_lines(out / f"{s}_raw.jsonl")}
    assert set(live_ids(out)) <= raw_ids
    assert not [p.name for p in out.glob(".*.tmp")], "temp files of unfinished writes are left"


def files_under(*roots: Path) -> Iterable[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def find_in_files(needles: Iterable[str], *roots: Path) -> list[str]:
    """'path: needle' for each needle found in the bytes of a file under `roots` (or in a text)."""
    wanted = [n for n in needles if n]
    found = []
    for path in files_under(*roots):
        data = path.read_bytes()
        found += [f"{path}: {n[:12]}..." for n in wanted if n.encode("utf-8") in data]
    return found


class ChatFaultServer(ScriptedServer):
    """A ScriptedServer whose script applies to chat completions only (the /models preflight is left alone),
    where a None entry lets one request through unharmed. While `gate` is clear, chat requests are
    recorded and then held unanswered."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gate = threading.Event()
        self.gate.set()

    def script(self, *steps: Fault | str | None) -> None:
        with self._lock:
            self.faults = deque(Fault(s) if isinstance(s, str) else s for s in steps)  # type: ignore[misc]

    def _record(self, request: RecordedRequest) -> Fault | None:
        chat = request.path.rstrip("/").endswith("/chat/completions")
        with self._lock:
            self.requests.append(request)
            fault = self.faults.popleft() if chat and self.faults else None
        if chat:
            self.gate.wait(timeout=120)
        return fault
