"""The `codefactory` program's exit (cli.run): status, output and exit handlers as at a normal exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli_runs import ROOT


def _python(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_program_exits_with_the_commands_status_and_all_its_output(tmp_path: Path) -> None:
    shown = _python("-m", "codefactory", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "incremental" in shown.stdout and "install-hook" in shown.stdout

    refused = _python("-m", "codefactory", "--repo", str(tmp_path / "missing"), "scan")
    assert refused.returncode == 2
    assert refused.stderr.startswith("codefactory: error: ") and refused.stderr.count("\n") == 1, refused.stderr

    legacy = _python("main.py", "--help")
    assert legacy.returncode == 0 and legacy.stdout == shown.stdout


def test_exit_handlers_run_and_buffered_output_is_flushed_before_the_process_ends() -> None:
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handler ran', file=sys.stderr))\n"
        "sys.stdout.write('buffered, no newline')\n"
        "sys.argv = ['codefactory', '--version']\n"
        "from codefactory.cli import run\n"
        "run()\n"
        "print('never reached')\n"
    )
    done = _python("-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("buffered, no newline") and "never reached" not in done.stdout
    assert "codefactory" in done.stdout.lower()
    assert done.stderr.strip() == "exit handler ran"


def test_under_a_profiler_the_exit_is_the_normal_one_and_its_results_are_written(tmp_path: Path) -> None:
    stats = tmp_path / "run.prof"
    profiled = _python("-m", "cProfile", "-o", str(stats), "-m", "codefactory", "--version")
    assert profiled.returncode == 0, profiled.stderr
    assert "codefactory" in profiled.stdout.lower()
    assert stats.is_file() and stats.stat().st_size > 0


def test_another_program_run_the_same_way_gets_its_status_and_output() -> None:
    """The scan benchmark runs library calls through cli.run, to exit as the program does."""
    script = (
        "import sys\n"
        "from codefactory.cli import run\n"
        "def program():\n"
        "    print('written', end='')\n"
        "    sys.exit(int(sys.argv[1]))\n"
        "run(program)\n"
    )
    for status in (0, 3):
        done = _python("-c", script, str(status))
        assert (done.returncode, done.stdout) == (status, "written"), done.stderr
