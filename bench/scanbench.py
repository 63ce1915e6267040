"""Scan + chunk + skeleton against `repomix --compress`, and peak memory, on the large corpora.

Both tools run as fresh processes on the same work tree, alternately, `repeats` times; the fastest run
of each counts (the least disturbed by other load on the machine). codefactory writes chunks.json and
project_skeleton.*, repomix its packed output file: each does its whole job, start to finish.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench.corpora import CACHE, Corpus
from bench.harness import ChildRun, Row, fresh, peak_tree_memory, run_child

REPOMIX_VERSION = "1.14.0"
NPM_DIR = CACHE / "npm"
REPOMIX = NPM_DIR / "node_modules" / ".bin" / "repomix"
CHILD = Path(__file__).resolve().parent / "snapshot_child.py"


def repomix_bin(install: bool) -> Path | None:
    """The bench-local repomix, installed with npm on first use when `install` (never in --quick)."""
    if REPOMIX.exists():
        return REPOMIX
    if not install or shutil.which("npm") is None:
        return None
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", "--loglevel=error",
                    f"repomix@{REPOMIX_VERSION}"], check=True)
    return REPOMIX if REPOMIX.exists() else None


def ours(corpus: Corpus, scratch: Path) -> tuple[ChildRun, dict[str, float]]:
    out = fresh(scratch / f"out-{corpus.name}")
    run = run_child([sys.executable, str(CHILD), str(corpus.root), str(out)])
    return run, json.loads(run.output.strip().splitlines()[-1])


def theirs(corpus: Corpus, repomix: Path, scratch: Path) -> ChildRun:
    out = scratch / f"repomix-{corpus.name}.xml"
    return run_child([str(repomix), "--compress", "--quiet", "-o", str(out), "."], cwd=corpus.root)


def measure_scan(corpus: Corpus, repomix: Path | None, scratch: Path, repeats: int) -> tuple[Row, dict]:
    runs: list[tuple[ChildRun, dict[str, float]]] = []
    others: list[ChildRun] = []
    for _ in range(repeats):
        runs.append(ours(corpus, scratch))
        if repomix is not None:
            others.append(theirs(corpus, repomix, scratch))
    best, info = min(runs, key=lambda r: r[0].wall)
    detail = {"corpus": corpus.name, "files_in_tree": corpus.files, "mb_in_tree": round(corpus.bytes / 1e6, 1),
              "ours_walls": [round(r.wall, 2) for r, _ in runs], "ours_cpu": round(best.cpu, 2), **info,
              "repomix_walls": [round(r.wall, 2) for r in others]}
    label = f"scan+chunk+skeleton, {corpus.name} ({corpus.files} files, {corpus.bytes / 1e6:.0f} MB)"
    ours_text = f"{best.wall:.1f} s ({info['files']} files → {info['chunks']} chunks)"
    if not others:
        return Row(label, ours_text, "repomix not installed", goal="≥ 2× faster", notes=[
            "repomix is installed by the full run (npm, into bench/.cache/npm); --quick never downloads"]), detail
    fastest = min(others, key=lambda r: r.wall)
    ratio = fastest.wall / best.wall
    detail["repomix_cpu"] = round(fastest.cpu, 2)
    return Row(label, ours_text, f"repomix --compress {fastest.wall:.1f} s", f"{ratio:.2f}× faster", "≥ 2× faster",
               ratio >= 2.0), detail


def measure_memory(corpus: Corpus, scratch: Path) -> tuple[Row, dict]:
    out = fresh(scratch / f"out-mem-{corpus.name}")
    peak, run = peak_tree_memory([sys.executable, str(CHILD), str(corpus.root), str(out)])
    info = json.loads(run.output.strip().splitlines()[-1])
    # PSS splits pages that forked workers share with the parent, so the tree's figure adds up honestly;
    # without /proc, fall back to the parent's peak RSS plus its largest worker's.
    figure = peak or info["maxrss_self_mb"] + info["maxrss_children_mb"]
    detail = {"corpus": corpus.name, "peak_tree_pss_mb": round(peak, 1), **info}
    row = Row(f"peak memory, {corpus.name} (largest corpus)", f"{figure:.0f} MB", goal="< 1 GB", ok=figure < 1024,
              notes=[f"process tree PSS sampled every 0.1 s; parent peak RSS {info['maxrss_self_mb']:.0f} MB, "
                     f"largest worker {info['maxrss_children_mb']:.0f} MB"])
    return row, detail
