"""The `codefactory` command: parses options, calls the library, maps errors to exit codes.

The library is imported by the commands that use it, not here: `--help`, `install-hook` and the error
paths start without loading the pipeline, git, tree-sitter and the rest (a fifth of a second)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from codefactory import __version__
from codefactory.errors import CodefactoryError

if TYPE_CHECKING:
    from codefactory import pipeline, snapshot

log = logging.getLogger("codefactory")


class State:
    """Global options, resolved lazily so `--help` works outside a repository."""

    def __init__(self, repo: str, flags: dict[str, Any], config_file: str | None, verbosity: int) -> None:
        self.repo_path = repo
        self.flags = flags
        self.config_file = Path(config_file) if config_file else None
        self.verbosity = verbosity

    def workspace(self, **overrides: Any) -> snapshot.Workspace:
        from codefactory.config import load_config
        from codefactory.gitrepo import GitRepo
        from codefactory.snapshot import Workspace

        repo = GitRepo(self.repo_path)
        config = load_config(repo.root, self.config_file, {**self.flags, **overrides})
        return Workspace(repo=repo, config=config, progress=self.verbosity >= 0)


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="codefactory")
@click.option("--repo", default=".", show_default=True, help="Git repository to read.")
@click.option("--out", default=None, help="Output directory (default: data/ in the repository).")
@click.option("--config", "config_file", default=None, help="Config file (default: codefactory.yaml in the repository).")
@click.option("--backend", type=click.Choice(["auto", "openai", "local"]), default=None, help="LLM backend.")
@click.option("--model", default=None, help="Model name (local: GGUF name).")
@click.option("--model-path", default=None, help="GGUF file for the local backend.")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1.")
@click.option("--concurrency", type=int, default=None, help="Parallel LLM requests (default 8).")
@click.option("--seed", type=int, default=None, help="Seed for sampling and deterministic choices.")
@click.option("--rev", default=None, help="Commit to process (default HEAD).")
@click.option("--max-requests", type=int, default=None, help="Stop scheduling LLM calls past N; the rest is deferred.")
@click.option("--judge/--no-judge", default=None, help="Score samples with an LLM judge; drop those below judge.threshold.")
@click.option("-v", "--verbose", count=True, help="More detail.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def cli(ctx: click.Context, repo: str, config_file: str | None, verbose: int, quiet: bool, **flags: Any) -> None:
    """Turn a git repository into a supervised fine-tuning dataset that teaches an LLM that project."""
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    keys = {"out": "out", "backend": "backend", "model": "model", "model_path": "llm.model_path",
            "base_url": "base_url", "concurrency": "concurrency", "seed": "seed", "rev": "rev",
            "max_requests": "max_requests", "judge": "judge.enabled"}
    ctx.obj = State(repo, {keys[k]: v for k, v in flags.items()}, config_file, -1 if quiet else verbose)


@cli.command()
@pass_state
def scan(state: State) -> None:
    """List the files that would be processed (-v: and why the others are skipped)."""
    ws = state.workspace()
    result = ws.scan()  # with the pipeline's own settings: what it lists is what the pipeline reads
    for file in result.files:
        click.echo(f"{_shown(file.path)}\t{file.language}")
    if state.verbosity > 0:
        for skipped in result.skipped:
            click.echo(f"skipped {_shown(skipped.path)}: {skipped.reason}", err=True)
        for file in result.files:
            if file.secrets:
                kinds = ", ".join(f"{kind} {n}" for kind, n in file.secrets)
                click.echo(f"redacted {_shown(file.path)}: {kinds}", err=True)
    click.echo(f"{len(result.files)} files selected, {len(result.skipped)} skipped at {result.commit[:10]}", err=True)


@cli.command()
@pass_state
def chunk(state: State) -> None:
    """Write chunks.json."""
    from codefactory.snapshot import take_chunks, write_chunks

    ws = state.workspace()
    scanned, chunks = take_chunks(ws)
    path = write_chunks(ws, chunks)
    click.echo(f"{len(chunks)} chunks from {len(scanned.files)} files -> {path}", err=True)


@cli.command()
@pass_state
def skeleton(state: State) -> None:
    """Write project_skeleton.txt and project_skeleton.json."""
    from codefactory.snapshot import take_skeleton, write_skeleton

    ws = state.workspace()
    _, skeleton = take_skeleton(ws)
    paths = write_skeleton(ws, skeleton)
    click.echo(f"skeleton of {len(skeleton.files)} files ({skeleton.token_count} tokens) -> "
               + ", ".join(str(p) for p in paths), err=True)


@cli.command()
@click.option("--limit", type=int, default=None, help="Chunks to use, most informative first (default: all).")
@click.option("--qa-count", type=int, default=None, help="Q&A triplets per chunk (default 3).")
@click.option("--dry-run", is_flag=True, help="Print the plan and write dry_run_requests.jsonl; call no LLM.")
@pass_state
def scene1(state: State, limit: int | None, qa_count: int | None, dry_run: bool) -> None:
    """Business-logic Q&A from the code chunks."""
    from codefactory import pipeline

    ws = state.workspace(**{"scene1.limit": limit, "scene1.qa_count": qa_count})
    report = pipeline.run_scene1(ws, dry_run=dry_run)
    _finish(report, state)


@cli.command()
@click.option("--count", type=int, default=None, help="Design proposals to generate (default 5).")
@click.option("--dry-run", is_flag=True, help="Print the plan and write dry_run_requests.jsonl; call no LLM.")
@pass_state
def scene2(state: State, count: int | None, dry_run: bool) -> None:
    """Architectural design proposals from the project skeleton."""
    from codefactory import pipeline

    ws = state.workspace(**{"scene2.count": count})
    report = pipeline.run_scene2(ws, dry_run=dry_run)
    _finish(report, state)


@cli.command()
@click.option("--limit", type=int, default=None, help="Scene-1 chunks (default: all).")
@click.option("--qa-count", type=int, default=None, help="Q&A triplets per chunk.")
@click.option("--count", type=int, default=None, help="Scene-2 proposals.")
@click.option("--dry-run", is_flag=True, help="Plan only; call no LLM.")
@pass_state
def build(state: State, limit: int | None, qa_count: int | None, count: int | None, dry_run: bool) -> None:
    """The whole job: chunks, skeleton, Scene-1, Scene-2 and the combined dataset."""
    from codefactory import pipeline

    ws = state.workspace(**{"scene1.limit": limit, "scene1.qa_count": qa_count, "scene2.count": count})
    report = pipeline.run_build(ws, dry_run=dry_run)
    _finish(report, state)


@cli.command()
@pass_state
def stats(state: State) -> None:
    """Counts, coverage and token totals of the dataset."""
    from codefactory.summary import describe_stats

    ws = state.workspace()
    for line in describe_stats(ws.out):
        click.echo(line)


@cli.command()
@click.option("--since", default=None, help="Base revision (default: the manifest's source commit).")
@click.option("--until", default=None, help="Target revision (default HEAD).")
@click.option("--fallback", type=click.Choice(["none", "full"]), default="none", show_default=True,
              help="When --since cannot be used (missing from a shallow clone, unknown, not an ancestor): "
                   "'none' stops with what to do, 'full' compares the whole tree at --until instead.")
@click.option("--dry-run", is_flag=True, help="Plan only; call no LLM.")
@pass_state
def incremental(state: State, since: str | None, until: str | None, fallback: str, dry_run: bool) -> None:
    """Update the dataset for what changed between two commits."""
    from codefactory.incremental import run_incremental

    ws = state.workspace()
    report = run_incremental(ws, since=since, until=until, fallback=fallback, dry_run=dry_run)
    _finish(report, state)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["openai", "sharegpt", "alpaca", "hf"]), required=True,
              help="openai chat JSONL, sharegpt, alpaca, or a Hugging Face dataset folder (Parquet + card).")
@click.option("--to", default=None, help="Folder to write (default: <out>/export/<format>).")
@click.option("--split", type=float, default=None, help="Share of samples for a validation split by source file, e.g. 0.1.")
@pass_state
def export(state: State, fmt: str, to: str | None, split: float | None) -> None:
    """Write the live, cleaned dataset in a fine-tuning format."""
    from codefactory.export import describe_export, export_dataset
    from codefactory.ui import print_lines

    ws = state.workspace(**{"export.split": split})
    print_lines(describe_export(export_dataset(ws, fmt, Path(to) if to else None)))


@cli.command()
@click.option("--to", default=None, help="HTML file to write (default: <out>/report.html).")
@pass_state
def report(state: State, to: str | None) -> None:
    """Write a self-contained HTML page about the dataset: counts, coverage, drop reasons, samples."""
    from codefactory.report import write_report

    ws = state.workspace()
    click.echo(f"report -> {write_report(ws, Path(to) if to else None)}", err=True)


@cli.command("install-hook")
@click.option("--uninstall", is_flag=True, help="Remove the hook (restoring a hook it replaced).")
@click.option("--strict", is_flag=True, help="Run in the foreground and fail the push on error.")
@pass_state
def install_hook(state: State, uninstall: bool, strict: bool) -> None:
    """Install the pre-push hook that updates the dataset on every push."""
    from codefactory.gitrepo import GitRepo
    from codefactory.hooks import install, uninstall as remove

    repo = GitRepo(state.repo_path)
    message = remove(repo.git_dir) if uninstall else install(repo.git_dir, strict=strict)
    click.echo(message)


def _shown(path: str) -> str:
    """A path as one line of output: quoted, JSON-style, when it holds a newline or another control character."""
    return json.dumps(path, ensure_ascii=False) if any(ord(c) < 32 for c in path) else path


def _finish(report: pipeline.RunReport, state: State) -> None:
    from codefactory.summary import describe_report
    from codefactory.ui import print_lines

    print_lines(describe_report(report, verbose=state.verbosity > 0))
    if report.failed:
        sys.exit(1)


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="codefactory")
    except click.exceptions.Abort:
        _interrupted()
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CodefactoryError as exc:
        click.echo(f"codefactory: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except Exception:  # noqa: BLE001 - the one place that turns a bug into a short message and a log
        path = Path(".codefactory") / "error.log"
        try:
            path.parent.mkdir(exist_ok=True)
            path.write_text(traceback.format_exc(), encoding="utf-8")
            where = f"; traceback in {path}"
        except OSError:
            where = ""
        click.echo(f"codefactory: internal error: {sys.exc_info()[1]!r}{where}", err=True)
        sys.exit(1)


def run(program: Callable[[], object] | None = None) -> NoReturn:
    """The `codefactory` program (console script, `python -m codefactory`, main.py): `main()` (or `program`,
    as the scan benchmark runs library calls), then an exit that skips tearing the interpreter down.

    Freeing, one by one, every object a run built (a dataset's indexes, the names of every file of the
    repository) took ~0.3 s at the end of a pre-push hook's 1-file update, a sixth of it (bench/README.md).
    Everything a run writes is closed and synced before `main` returns; exit handlers still run (logging's
    flush among them), other threads are waited for and the standard streams flushed, as at a normal exit.
    Under a profiler, coverage or a debugger the exit is the normal one. Tests call `main()`, which raises
    SystemExit as usual.
    """
    try:
        (program or main)()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): printed, status 1
            print(exc.code, file=sys.stderr)
            code = 1
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # cProfile, coverage and debuggers write their results at the interpreter's exit
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`codefactory stats | head`), a closed stream
            code = code or 1
    os._exit(code)


def _interrupted() -> None:
    from codefactory.ui import console

    console.print("interrupted: finished samples are cached; run the same command again to resume", markup=False)
    sys.exit(130)
