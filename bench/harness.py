"""Shared helpers of the benchmarks: workspaces, child-process timing, the result table."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from codefactory.config import load_config  # noqa: E402
from codefactory.gitrepo import GitRepo  # noqa: E402
from codefactory.snapshot import Workspace  # noqa: E402

MODEL = "bench-model"


def workspace(repo: Path, base_url: str, out: Path, **settings: Any) -> Workspace:
    """A workspace on `repo` that writes to `out` and talks to a loopback endpoint only."""
    flags = {"base_url": base_url, "model": MODEL, "out": str(out), "backend": "openai", **settings}
    # environ={}: the user's keys, endpoints and CODEFACTORY_* settings never leak into a benchmark.
    return Workspace(repo=GitRepo(repo), config=load_config(repo, flags=flags, environ={}), progress=False)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def reset_cache(repo: Path) -> None:
    """Forget every cached reply of `repo`, so the next run asks the LLM for everything.

    Only the reply cache: the quality assessment's index and signatures under .codefactory/quality are
    what a user's repository keeps between runs too."""
    shutil.rmtree(repo / ".codefactory" / "cache", ignore_errors=True)


@dataclass
class ChildRun:
    wall: float  # seconds, process start to exit
    cpu: float  # user + system seconds of the process and the children it waited for
    maxrss_mb: float  # the process's own peak resident memory
    output: str


def run_child(argv: list[str], cwd: Path | None = None, timeout: float = 900) -> ChildRun:
    """Run a process to completion; wall time, CPU time and peak memory from wait4()."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()  # a child that writes a lot must not block on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {proc.returncode}:\n{output[-2000:]}")
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output)


@dataclass
class Row:
    """One line of the result table."""

    measurement: str
    ours: str
    baseline: str = "—"
    ratio: str = "—"
    goal: str = "—"
    ok: bool | None = None  # None: reported only
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return {True: "yes", False: "NO", None: "—"}[self.ok]


def render_table(rows: list[Row]) -> str:
    header = ["measurement", "codefactory", "compared with", "ratio", "goal", "met"]
    cells = [[r.measurement, r.ours, r.baseline, r.ratio, r.goal, r.verdict] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    notes = [f"- {r.measurement}: {n}" for r in rows for n in r.notes]
    return "\n".join(lines + ([""] + notes if notes else []))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    try:
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
        mem = f", {mem_kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        mem = ""
    load = f", load {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    return f"{cores} cores ({cpu}){mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}{load}"


def dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _tree_pss_kb(pid: int) -> int:
    """Proportional set size of a process and its descendants (shared pages split among them), Linux only."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return total


def peak_tree_memory(argv: list[str], cwd: Path | None = None, interval: float = 0.1) -> tuple[float, ChildRun]:
    """Run `argv`, sampling its process tree's memory; (peak PSS in MB, the run). 0 when /proc is missing."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    peak = 0
    import threading

    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval):
            peak = max(peak, _tree_pss_kb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    done.set()
    _, status, usage = os.wait4(proc.pid, 0)
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {proc.returncode}:\n{output[-2000:]}")
    run = ChildRun(time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output)
    return peak / 1024, run


class PhaseTimer:
    """Wall time spent in named functions during a block: instrumentation only, behaviour unchanged.

        with PhaseTimer({"quality": (codefactory.pipeline, "assess_dataset")}) as phases:
            run_generation(...)
        phases.seconds["quality"]
    """

    def __init__(self, targets: dict[str, tuple[Any, str]]) -> None:
        self.targets = targets
        self.seconds: dict[str, float] = {name: 0.0 for name in targets}
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> "PhaseTimer":
        for name, (module, attr) in self.targets.items():
            original = getattr(module, attr)
            self._saved.append((module, attr, original))
            setattr(module, attr, self._wrap(name, original))
        return self

    def _wrap(self, name: str, original: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed

    def __exit__(self, *exc: object) -> None:
        for module, attr, original in reversed(self._saved):
            setattr(module, attr, original)
