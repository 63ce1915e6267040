"""The pre-push hook: installing it, and the logic that hooks/pre-push runs.

Installed the way pre-commit installs its hooks (STYLE 8): the script carries an ID line so
install-hook recognizes its own; a foreign hook is moved to `pre-push.legacy` and run first with
the same stdin and arguments (its failure fails the push); uninstall puts it back.

    python -m codefactory.hooks pre-push [--strict] -- REMOTE URL   # what hooks/pre-push runs
    python -m codefactory.hooks range [--since REV] [--until REV]   # the pre-commit framework's entry

A push is never blocked unless strict: the update runs detached and logs to `.codefactory/hook.log`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import stat
import subprocess
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TextIO

from filelock import FileLock

from codefactory.errors import CodefactoryError, UsageError
from codefactory.gitrepo import GitRepo
from codefactory.pushes import PushedRef, Update, parse_push_lines, plan_updates

MARKER = "ID: codefactory-pre-push-hook"
LOG_NAME = "hook.log"
LOG_LIMIT = 1 << 20  # bytes; past this the log is rotated to hook.log.1 so it never grows without bound
STRICT_ENV = "CODEFACTORY_HOOK_STRICT"
PREFIX = "codefactory pre-push"


# -- install / uninstall ------------------------------------------------------------------------


def hook_template() -> str:
    """The shipped hook script (hooks/pre-push is a copy of it)."""
    return (resources.files("codefactory") / "resources" / "pre-push").read_text(encoding="utf-8")


def render_hook(*, python: str, strict: bool) -> str:
    """The template with its `# start templated` block filled in, as pre-commit fills hook-tmpl."""
    values = {"INSTALL_PYTHON": python, "STRICT": "1" if strict else ""}
    lines, inside = [], False
    for line in hook_template().splitlines(keepends=True):
        if line.strip() in ("# start templated", "# end templated"):
            inside = line.strip() == "# start templated"
        elif inside:
            name = line.split("=", 1)[0]
            line = f"{name}={shlex.quote(values[name])}\n"
        lines.append(line)
    return "".join(lines)


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # missing, a dangling symlink, a directory: not ours either way
        return False


def install(git_dir: Path, *, strict: bool) -> str:
    """Install (or refresh) the hook; a foreign pre-push hook is kept as pre-push.legacy and chained."""
    hook, legacy = _hook_paths(git_dir)
    hook.parent.mkdir(parents=True, exist_ok=True)
    notes = []
    if os.path.lexists(hook) and not is_ours(hook):
        if os.path.lexists(legacy):
            # Moving it would destroy the hook already kept there; the user has to pick.
            raise UsageError(f"{hook} is not codefactory's and {legacy.name} already exists; "
                             "move one of them away and run install-hook again")
        os.replace(hook, legacy)
        notes.append(f"the existing hook was moved to {legacy.name} and runs first")
    elif os.path.lexists(legacy):
        notes.append(f"{legacy.name} runs first")
    hook.write_text(render_hook(python=sys.executable, strict=strict), encoding="utf-8")
    _make_executable(hook)
    mode = "strict: runs in the foreground and fails the push on error" if strict else \
        "updates run in the background and log to .codefactory/hook.log"
    return f"pre-push hook installed at {hook} ({'; '.join([mode, *notes])})"


def uninstall(git_dir: Path) -> str:
    """Remove codefactory's hook and restore the one it replaced; a foreign hook is left alone."""
    hook, legacy = _hook_paths(git_dir)
    if not is_ours(hook):
        if os.path.lexists(hook):
            return f"{hook} is not codefactory's hook; left it alone"
        return f"no codefactory pre-push hook at {hook}; nothing to do"
    hook.unlink()
    if os.path.lexists(legacy):
        os.replace(legacy, hook)
        return f"pre-push hook removed; restored the previous hook at {hook}"
    return f"pre-push hook removed from {hook}"


def _hook_paths(git_dir: Path) -> tuple[Path, Path]:
    git_dir = Path(git_dir)
    common = git_dir / "commondir"
    if common.is_file():  # a linked worktree: git runs the hooks of the main repository's git dir
        git_dir = (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
    hook = git_dir / "hooks" / "pre-push"
    return hook, hook.with_name("pre-push.legacy")


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# -- running the updates ------------------------------------------------------------------------------


def incremental_command(root: Path, update: Update) -> list[str]:
    """The interpreter running this module has codefactory, so the update needs nothing from PATH."""
    command = [sys.executable, "-m", "codefactory", "--repo", str(root), "-q", "incremental"]
    if update.since:
        command += ["--since", update.since]
    return command + ["--until", update.until]


def run_updates(root: Path, updates: Sequence[Update], *, out: TextIO, log: Path | None = None) -> int:
    """Run the updates one after the other; returns the first failing exit status, else 0.

    A file lock makes a second push's updates wait for the first's instead of failing on the
    output directory's lock.
    """
    status = 0
    with FileLock(str(state_dir(root) / "hook.lock")):
        for update in updates:
            span = f"{(update.since or 'manifest')[:12]}..{update.until[:12]}"
            _say(f"update {update.ref} {span} started (pid {os.getpid()})", out, log)
            out.flush()
            code = subprocess.call(incremental_command(root, update), cwd=root, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
            _say(f"update {update.ref} {span} finished: exit {code}", out, log)
            status = status or code
    return status


def start_background(root: Path, updates: Sequence[Update]) -> Path:
    """Start the updates detached from the push (own session, no inherited pipes); returns the log path."""
    log_path = state_dir(root) / LOG_NAME
    if log_path.exists() and log_path.stat().st_size > LOG_LIMIT:
        os.replace(log_path, log_path.with_name(LOG_NAME + ".1"))
    payload = json.dumps([asdict(u) for u in updates])
    with open(log_path, "a", encoding="utf-8") as log:
        subprocess.Popen(
            [sys.executable, "-m", "codefactory.hooks", "_worker", "--repo", str(root), "--updates", payload],
            cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    return log_path


def state_dir(root: Path) -> Path:
    """`.codefactory/` in the repository, ignored by git so the hook log never shows in `git status`."""
    path = root / ".codefactory"
    path.mkdir(exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return path


def _say(message: str, out: TextIO | None, log: Path | None = None) -> None:
    line = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {PREFIX}: {message}\n"
    if out is not None:
        out.write(line)
        out.flush()
    if log is not None:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(line)


def strict_mode(flag: bool) -> bool:
    """CODEFACTORY_HOOK_STRICT (1/0) wins over how the hook was installed."""
    value = os.environ.get(STRICT_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return flag


# -- entry points ---------------------------------------------------------------------------------------


def pre_push(hook_dir: Path | None, args: Sequence[str], stdin: bytes, *, strict: bool) -> int:
    """The git hook: chain to pre-push.legacy, then update the dataset for the pushed refs."""
    legacy = hook_dir / "pre-push.legacy" if hook_dir else None
    if legacy is not None and os.access(legacy, os.X_OK):
        code = subprocess.run([str(legacy), *args], input=stdin).returncode
        if code:
            print(f"{PREFIX}: {legacy.name} failed (exit {code}); dataset not updated", file=sys.stderr)
            return code
    repo = GitRepo(".")  # git runs hooks at the top of the work tree
    updates, notes = plan_updates(repo, parse_push_lines(stdin.decode("utf-8", errors="replace")))
    return _launch(repo.root, updates, notes, strict=strict)


def pre_commit_range(since: str | None, until: str | None, *, strict: bool) -> int:
    """The pre-commit framework's entry: the range comes from PRE_COMMIT_FROM_REF / PRE_COMMIT_TO_REF."""
    env = os.environ
    since = since or env.get("PRE_COMMIT_FROM_REF") or env.get("PRE_COMMIT_SOURCE")  # older pre-commit names
    until = until or env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_ORIGIN") or "HEAD"
    remote_ref = env.get("PRE_COMMIT_REMOTE_BRANCH") or env.get("PRE_COMMIT_LOCAL_BRANCH") or "refs/heads/HEAD"
    repo = GitRepo(".")
    # No FROM_REF means pre-commit saw the push reach the root commit: treat it as a new branch.
    pushed = PushedRef("HEAD", repo.resolve(until), remote_ref, since or "0" * 40)
    updates, notes = plan_updates(repo, [pushed])
    return _launch(repo.root, updates, notes, strict=strict)


def _launch(root: Path, updates: Sequence[Update], notes: Sequence[str], *, strict: bool) -> int:
    log_path = state_dir(root) / LOG_NAME
    for note in notes:
        _say(note, sys.stderr if strict else None, log_path)
    if not updates:
        return 0
    if strict:
        code = run_updates(root, updates, out=sys.stderr, log=log_path)
        if code:
            print(f"{PREFIX}: dataset update failed (exit {code}); push stopped. Fix it, or push with "
                  f"--no-verify, or set {STRICT_ENV}=0 to update in the background", file=sys.stderr)
        return code
    start_background(root, updates)
    print(f"{PREFIX}: updating the dataset in the background (log: {log_path.relative_to(root)})", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codefactory.hooks")
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("pre-push", help="the git hook: reads the pushed refs from stdin")
    push.add_argument("--hook-dir", type=Path, default=None, help="where pre-push.legacy may be")
    push.add_argument("--strict", action="store_true")
    push.add_argument("args", nargs="*", help="the remote's name and URL, as git passes them")
    ranged = commands.add_parser("range", help="pre-commit framework entry (PRE_COMMIT_FROM_REF/TO_REF)")
    ranged.add_argument("--since")
    ranged.add_argument("--until")
    ranged.add_argument("--strict", action="store_true")
    worker = commands.add_parser("_worker", help=argparse.SUPPRESS)
    worker.add_argument("--repo", type=Path, required=True)
    worker.add_argument("--updates", required=True)
    options = parser.parse_args(argv)

    if options.command == "_worker":
        updates = [Update(**u) for u in json.loads(options.updates)]
        return run_updates(options.repo, updates, out=sys.stdout)
    strict = strict_mode(options.strict)
    try:
        if options.command == "pre-push":
            stdin = sys.stdin.buffer.read()
            return pre_push(options.hook_dir, options.args, stdin, strict=strict)
        return pre_commit_range(options.since, options.until, strict=strict)
    except CodefactoryError as exc:
        print(f"{PREFIX}: {exc}" + ("" if strict else "; dataset not updated"), file=sys.stderr)
        return 1 if strict else 0
    except Exception:  # noqa: BLE001 - a bug must not block a push unless strict; the traceback goes to the log
        where = Path(".codefactory") / LOG_NAME
        try:
            with open(where, "a", encoding="utf-8") as handle:
                handle.write(traceback.format_exc())
        except OSError:
            pass
        print(f"{PREFIX}: internal error {sys.exc_info()[1]!r} (traceback in {where})", file=sys.stderr)
        return 1 if strict else 0


if __name__ == "__main__":
    sys.exit(main())
