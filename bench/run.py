"""codefactory benchmarks: one entry point, one table of figures and ratios (bench/README.md).

    .venv/bin/python bench/run.py            # the full suite: stdlib + Go corpora, release histories, repomix
    .venv/bin/python bench/run.py --quick    # smoke run, < 1 minute, nothing downloaded (called by .ci/run)
    .venv/bin/python bench/run.py --only scan,memory --record   # some measurements; results into README

Every LLM call goes to a loopback server (bench/llmserver.py). Corpora, sdists and repomix are cached
under bench/.cache/ (git-ignored). The full run installs what it lacks with the ordinary clients (npm for
repomix, pip download for the sdists); the Go corpus needs Debian's golang-src (`apt-get install golang-src`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import corpora  # noqa: E402
from bench.genbench import measure_overhead, measure_prompt_tokens, measure_throughput  # noqa: E402
from bench.harness import Row, dump, machine, render_table  # noqa: E402
from bench.incbench import baseline_dataset, measure_history, measure_one_file_commit  # noqa: E402
from bench.llmserver import LoopbackLLM  # noqa: E402
from bench.scanbench import measure_memory, measure_scan, repomix_bin  # noqa: E402

BENCH = Path(__file__).resolve().parent
README = BENCH / "README.md"
RESULTS = BENCH / ".cache" / "results"
BEGIN, END = "<!-- bench/run.py results: begin -->", "<!-- bench/run.py results: end -->"

# The release histories of the full run (pure Python, sdists on PyPI), one commit per release:
# 13 consecutive attrs releases, each months of merged work (a project's largest commits), and 14 consecutive
# hypothesis releases, each one merged pull request (hypothesis releases every merge that changes code):
# a project's typical commits, as the pre-push hook and the action see them.
RELEASES = ("attrs", ["21.3.0", "21.4.0", "22.1.0", "22.2.0", "23.1.0", "23.2.0", "24.1.0", "24.2.0", "24.3.0",
                      "25.1.0", "25.2.0", "25.3.0", "25.4.0"])
MERGES = ("hypothesis", [f"6.99.{patch}" for patch in range(14)])
# --quick's scan corpus: a few stdlib packages, ~1.5 MB of code.
QUICK_SUBSET = ["json", "email", "asyncio", "argparse.py", "typing.py", "dataclasses.py", "pathlib.py"]
ONEFILE_LIMIT = 5000
MEASUREMENTS = ("scan", "memory", "history", "onefile", "throughput", "overhead", "prompt", "models")


def plan(quick: bool) -> dict[str, Callable[[Path], list[tuple[Row, dict]]]]:
    """Each measurement as a function of the scratch directory; corpora are built lazily, once."""
    cache: dict[str, corpora.Corpus | None] = {}

    def corpus(name: str) -> corpora.Corpus | None:
        if name not in cache:
            builders: dict[str, Callable[[], corpora.Corpus | None]] = {
                "stdlib": corpora.stdlib_corpus,
                "go": corpora.go_corpus,
                "subset": lambda: corpora.stdlib_corpus(QUICK_SUBSET, name="stdlib-subset"),
                "synthetic": corpora.synthetic_history,
                "releases": lambda: corpora.release_corpus(*RELEASES),
                "merges": lambda: corpora.release_corpus(*MERGES),
            }
            cache[name] = builders[name]()
        return cache[name]

    def need(name: str) -> corpora.Corpus:
        found = corpus(name)
        if found is None:
            raise SkipMeasurement(f"corpus {name} unavailable (Go: `apt-get install golang-src`)")
        return found

    def scan(scratch: Path) -> list[tuple[Row, dict]]:
        repomix = repomix_bin(install=not quick)
        if quick:
            return [measure_scan(need("subset"), repomix if repomix else None, scratch, repeats=1)]
        rows = [measure_scan(need("stdlib"), repomix, scratch, repeats=3)]
        go = corpus("go")
        if go is not None:
            rows.append(measure_scan(go, repomix, scratch, repeats=3))
        else:
            rows.append((Row("scan+chunk+skeleton, go", "skipped", notes=["`apt-get install golang-src` first"]), {}))
        return rows

    def memory(scratch: Path) -> list[tuple[Row, dict]]:
        if quick:
            return [measure_memory(need("subset"), scratch)]
        big = [c for c in (corpus("go"), corpus("stdlib")) if c is not None]
        return [measure_memory(max(big, key=lambda c: c.bytes), scratch)]

    def history(scratch: Path) -> list[tuple[Row, dict]]:
        with LoopbackLLM() as server:
            if quick:
                return [measure_history(need("synthetic"), server, scratch, real_rebuilds=False, typical=True,
                                        commits_are="typical commits made by the benchmark")]
            return [measure_history(need("releases"), server, scratch, real_rebuilds=True, typical=False,
                                    commits_are="whole releases, each months of merged work"),
                    measure_history(need("merges"), server, scratch, real_rebuilds=True, typical=True,
                                    commits_are="releases of one merged pull request each")]

    def onefile(scratch: Path) -> list[tuple[Row, dict]]:
        with LoopbackLLM() as server:
            if quick:
                # The history run leaves a dataset of the synthetic repository at its head; else build one.
                synthetic = need("synthetic")
                data = scratch / f"data-{synthetic.name}"
                if not (data / "manifest.json").is_file():
                    data = baseline_dataset(synthetic, server, None)
                return [measure_one_file_commit(synthetic, server, scratch, data, repeats=1, cli=False)]
            stdlib = need("stdlib")
            # Scene-1 for the 5000 most informative chunks (15k samples): a dataset a team would keep.
            data = baseline_dataset(stdlib, server, ONEFILE_LIMIT)
            # The least disturbed of five runs, as for the scan: on a shared VM a neighbour can add a third.
            return [measure_one_file_commit(stdlib, server, scratch, data, repeats=5, cli=True)]

    def throughput(scratch: Path) -> list[tuple[Row, dict]]:
        source = need("synthetic") if quick else need("stdlib")
        return [measure_throughput(source, scratch, latency=1.0, levels=[1, 8, 32, 64], rounds=2 if quick else 5)]

    def overhead(scratch: Path) -> list[tuple[Row, dict]]:
        if quick:
            return [measure_overhead(need("synthetic"), scratch, count=150, concurrency=8)]
        return [measure_overhead(need("stdlib"), scratch, count=3000, concurrency=8)]

    def prompt(scratch: Path) -> list[tuple[Row, dict]]:
        return [measure_prompt_tokens(need("synthetic") if quick else need("stdlib"), scratch,
                                      sample=300 if quick else 2000)]

    def models(scratch: Path) -> list[tuple[Row, dict]]:
        return [(embedded_model_row(), {})]

    return {"scan": scan, "memory": memory, "history": history, "onefile": onefile, "throughput": throughput,
            "overhead": overhead, "prompt": prompt, "models": models}


class SkipMeasurement(Exception):
    pass


def embedded_model_row() -> Row:
    """The embedded model is measured by bench/models.py (its own README section); quote it, don't re-measure."""
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    figures = re.findall(r"(\d+(?:\.\d+)?) ?s(?:econds)? to (?:the )?first sample", text)
    rates = re.findall(r"(\d+(?:\.\d+)?) samples/min", text)
    ours = (f"{figures[0]} s to first sample, {rates[0]} samples/min" if figures and rates
            else "see bench/models.py's section of bench/README.md")
    return Row("embedded model, 2 cores: time to first sample, samples/min", ours, goal="reported",
               notes=["measured by bench/models.py (another engineer's suite); quoted from bench/README.md, "
                      "not re-measured here"])


def _machines(described: list[str]) -> list[str]:
    """Each machine once, with the range of the loads its steps started at ("..., load 0.8-2.6 at start")."""
    loads: dict[str, list[float]] = {}
    for text in described:
        machine, _, load = text.partition(", load ")
        loads.setdefault(machine, []).extend([float(load.split()[0])] if load else [])
    return [machine + (f", load {min(seen):.1f}" + (f"-{max(seen):.1f}" if max(seen) > min(seen) else "") + " at start"
                       if seen else "") for machine, seen in sorted(loads.items())]


def record(steps: dict[str, dict], quick: bool) -> None:
    """Replace this suite's section of bench/README.md, leaving every other section as it is."""
    rows = [Row(**r) for name in MEASUREMENTS if name in steps for r in steps[name]["rows"]]
    dates = sorted({steps[n]["measured"] for n in steps})
    machines = _machines([steps[n]["machine"] for n in steps])
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]} (steps measured separately: see details)"
    details = {n: {k: v for k, v in steps[n].items() if k != "rows"} for n in MEASUREMENTS if n in steps}
    body = (f"{BEGIN}\n### Results{' (--quick)' if quick else ''}: {when}\n\nMachine: {'; '.join(machines)}.\n\n"
            f"{render_table(rows)}\n\n<details><summary>Details (JSON)</summary>\n\n```json\n"
            f"{json.dumps(details, indent=1, default=str)}\n```\n</details>\n{END}")
    text = README.read_text(encoding="utf-8") if README.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + body + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    README.write_text(text, encoding="utf-8")


def merged_steps(path: Path, fresh: dict[str, dict]) -> dict[str, dict]:
    """The steps of an earlier run of the same mode, with this run's steps replacing theirs (--only)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")).get("steps", {})
    except (OSError, ValueError):
        earlier = {}
    return {**{k: v for k, v in earlier.items() if k in MEASUREMENTS}, **fresh}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpora, no downloads, < 1 minute")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(MEASUREMENTS)}")
    parser.add_argument("--record", action="store_true", help="write the results into bench/README.md")
    args = parser.parse_args(argv)
    wanted = [m for m in args.only.split(",") if m] or list(MEASUREMENTS)
    unknown = set(wanted) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")

    started = time.perf_counter()
    print(f"codefactory benchmarks{' (--quick)' if args.quick else ''} on {machine()}", flush=True)
    steps = plan(args.quick)
    done: dict[str, dict] = {}
    errors = 0
    with tempfile.TemporaryDirectory(prefix="codefactory-bench-") as tmp:
        for name in wanted:
            step_started = time.perf_counter()
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            try:
                results = steps[name](Path(tmp))
            except SkipMeasurement as exc:
                results = [(Row(name, "skipped", notes=[str(exc)]), {})]
            except Exception:  # one broken measurement must not hide the others' figures
                errors += 1
                traceback.print_exc()
                results = [(Row(name, "ERROR", notes=["see the traceback above"]), {})]
            seconds = time.perf_counter() - step_started
            done[name] = {"rows": [r.__dict__ for r, _ in results], "details": [d for _, d in results],
                          "measured": stamp, "machine": machine(), "seconds": round(seconds, 1)}
            print(f"  {name}: {seconds:.1f} s", flush=True)
    elapsed = time.perf_counter() - started
    rows = [Row(**r) for name in wanted for r in done[name]["rows"]]
    print()
    print(render_table(rows))
    print(f"\n{len(rows)} figures in {elapsed:.0f} s")
    results_file = RESULTS / f"{'quick' if args.quick else 'full'}.json"
    merged = merged_steps(results_file, done)
    dump(results_file, {"steps": merged})
    if args.record:
        record(merged, args.quick)
    # A figure that misses its goal is a finding, not a crash: only a broken measurement fails the run.
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
