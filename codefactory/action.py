"""The GitHub Action's steps: `python -m codefactory.action run` and `... commit` (see action.yml).

Kept in Python rather than inline shell so tests run them for real with a simulated
GITHUB_EVENT_PATH, GITHUB_OUTPUT and GITHUB_WORKSPACE. Composite actions do not export their
inputs, so action.yml maps each one to an INPUT_<NAME> variable; the API key travels as
INPUT_API_KEY and reaches codefactory only as OPENAI_API_KEY, never on a command line or in output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from codefactory.errors import CodefactoryError
from codefactory.fileio import read_jsonl
from codefactory.gitrepo import GitRepo

INPUTS = ("since", "until", "model", "base-url", "api-key", "output-dir", "mode", "scenes", "python-version")
OUTPUTS = ("dataset-version", "samples-added", "samples-retired", "dataset-path")
MODES = ("artifact", "commit", "both")
BOT = ("github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com")
SHALLOW_HELP = ("the checkout is too shallow to reach {rev}: use actions/checkout with `fetch-depth: 0` "
                "(or set the since input to a commit the clone has)")
# Scenes left out are switched off through their settings (environment beats codefactory.yaml).
SCENE_OFF = {"scene1": {"CODEFACTORY_SCENE1_LIMIT": "0"},
             "scene2": {"CODEFACTORY_SCENE2_COUNT": "0", "CODEFACTORY_SCENE2_MAX_NEW_PER_RUN": "0"}}


class ActionError(Exception):
    """A problem reported as a GitHub error annotation; the step then fails."""


def get_input(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get("INPUT_" + name.replace("-", "_").upper(), "").strip() or default


def workspace(env: Mapping[str, str]) -> Path:
    return Path(env.get("GITHUB_WORKSPACE") or ".").resolve()


def output_dir(env: Mapping[str, str]) -> Path:
    out = Path(get_input(env, "output-dir", "data"))
    return out if out.is_absolute() else workspace(env) / out


def choose_since(repo: GitRepo, env: Mapping[str, str], out: Path) -> tuple[str | None, list[str]]:
    """The --since to pass (None: from the manifest, or a full build without one) and why."""
    notes: list[str] = []
    since = get_input(env, "since")
    explicit = bool(since)
    if not since:
        before = _event(env).get("before")
        if not isinstance(before, str) or not before:
            return None, ["no push event `before`: starting from the dataset's manifest"]
        if not before.strip("0"):
            return None, ["a new branch (`before` is all zeros): full build, or from the manifest if there is one"]
        if not (out / "manifest.json").is_file():
            # The output directory does not survive between runs in artifact mode; the restored
            # cache makes a full build cost no LLM calls for unchanged chunks.
            return None, [f"no dataset in {out} yet: full build (cached replies are reused)"]
        since = before
    if not repo.commit_exists(since):
        if repo.is_shallow:
            raise ActionError(SHALLOW_HELP.format(rev=since[:12]))
        if explicit:
            raise ActionError(f"unknown revision {since!r} given as the since input")
        return None, [f"{since[:12]} is not in this clone (force-pushed away?): starting from the manifest"]
    until = get_input(env, "until", "HEAD")
    if not repo.is_ancestor(since, until):
        base = repo.merge_base(since, until)
        notes.append(f"{since[:12]} is not an ancestor of {until} (a force push): starting from their merge base")
        return base, notes
    return since, notes


def run(env: Mapping[str, str]) -> int:
    """The run step: update the dataset and write the step outputs."""
    mode = get_input(env, "mode", "artifact")
    if mode not in MODES:
        raise ActionError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    root, out = workspace(env), output_dir(env)
    child_env = _child_env(env)  # validates `scenes` before any work
    try:
        repo = GitRepo(root)
        since, notes = choose_since(repo, env, out)
    except CodefactoryError as exc:
        raise ActionError(str(exc)) from None
    for note in notes:
        print(f"codefactory: {note}", flush=True)
    before = _version(out)

    command = [sys.executable, "-m", "codefactory", "--repo", str(root), "--out", str(out)]
    for name in ("model", "base-url"):
        if get_input(env, name):
            command += [f"--{name}", get_input(env, name)]
    command += ["-q", "incremental"]
    if since:
        command += ["--since", since]
    if get_input(env, "until"):
        command += ["--until", get_input(env, "until")]
    print("codefactory: " + " ".join(command[1:]), flush=True)
    code = subprocess.call(command, cwd=root, env=child_env)
    if code not in (0, 1):  # 1: the run finished but some samples failed; the dataset is still good
        raise ActionError(f"codefactory incremental failed (exit {code}); see the output above")

    outputs = summarize(out, before)
    _append(env.get("GITHUB_OUTPUT"), "".join(f"{k}={v}\n" for k, v in outputs.items()))
    _append(env.get("GITHUB_STEP_SUMMARY"),
            f"### codefactory dataset v{outputs['dataset-version']}\n\n"
            f"+{outputs['samples-added']} added, -{outputs['samples-retired']} retired · `{outputs['dataset-path']}`\n")
    if code == 1:
        print("::warning title=codefactory::some samples failed; the next run retries them", flush=True)
    return 0


def summarize(out: Path, before: int) -> dict[str, str]:
    """Step outputs from manifest.json and the versions.jsonl lines written after version `before`."""
    version = _version(out)
    fresh = [v for v in read_jsonl(out / "versions.jsonl") if int(v.get("version", 0)) > before]
    return {
        "dataset-version": str(version),
        "samples-added": str(sum(len(v.get("added", [])) for v in fresh)),
        "samples-retired": str(sum(len(v.get("retired", [])) for v in fresh)),
        "dataset-path": str(out),
    }


def commit(env: Mapping[str, str]) -> int:
    """The commit step: commit the output directory with "codefactory: dataset vN for <sha>" and push it."""
    root, out = workspace(env), output_dir(env)
    if not out.is_dir():
        print(f"codefactory: no dataset at {out}; nothing to commit", flush=True)
        return 0
    # --force: a dataset directory listed in .gitignore is still what commit mode was asked to keep.
    _git(root, "add", "--force", "--", str(out))
    if _git(root, "diff", "--cached", "--quiet", "--", str(out), check=False).returncode == 0:
        print("codefactory: dataset unchanged; nothing to commit", flush=True)
        return 0
    sha = env.get("GITHUB_SHA") or _git(root, "rev-parse", "HEAD").stdout.strip()
    message = f"codefactory: dataset v{_version(out)} for {sha[:12]}"
    _git(root, "commit", "--quiet", "-m", message, "--", str(out), env=_bot_env(env))
    print(f"codefactory: committed {message!r}", flush=True)

    ref = env.get("GITHUB_REF", "")
    if not ref.startswith("refs/heads/"):
        print(f"::warning title=codefactory::not on a branch ({ref or 'no GITHUB_REF'}); the commit was not pushed")
        return 0
    branch = ref[len("refs/heads/"):]
    if _git(root, "push", "--quiet", "origin", f"HEAD:{ref}", check=False).returncode != 0:
        # Someone pushed meanwhile; their commits do not touch the dataset, so a rebase is clean.
        _git(root, "pull", "--quiet", "--rebase", "origin", branch, env=_bot_env(env))
        _git(root, "push", "--quiet", "origin", f"HEAD:{ref}")
    print(f"codefactory: pushed to {branch}", flush=True)
    return 0


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    child = dict(env)
    key = get_input(env, "api-key")
    if key:  # only when given, so a key set on the job's env is not wiped by an empty input
        child["OPENAI_API_KEY"] = key
    child.pop("INPUT_API_KEY", None)
    scenes = {s.strip() for s in get_input(env, "scenes", "scene1,scene2").replace(" ", ",").split(",") if s.strip()}
    unknown = scenes - set(SCENE_OFF)
    if unknown or not scenes:
        raise ActionError(f"scenes must list scene1 and/or scene2, got {get_input(env, 'scenes')!r}")
    for scene, settings in SCENE_OFF.items():
        if scene not in scenes:
            child.update(settings)
    return child


def _bot_env(env: Mapping[str, str]) -> dict[str, str]:
    child = dict(env)
    for role in ("AUTHOR", "COMMITTER"):
        child.setdefault(f"GIT_{role}_NAME", BOT[0])
        child.setdefault(f"GIT_{role}_EMAIL", BOT[1])
    return child


def _git(root: Path, *args: str, check: bool = True, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                env=dict(env) if env is not None else None)
    except OSError as exc:
        raise ActionError(f"git failed ({exc}); is it installed on the runner?") from None
    if check and result.returncode != 0:
        raise ActionError(f"git {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _event(env: Mapping[str, str]) -> dict[str, object]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def _version(out: Path) -> int:
    try:
        return int(json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("dataset_version", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


def main(argv: list[str] | None = None, env: MutableMapping[str, str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    step = args[0] if args else "run"
    try:
        if step == "run":
            return run(env)
        if step == "commit":
            return commit(env)
        raise ActionError(f"unknown step {step!r} (expected run or commit)")
    except ActionError as exc:
        # Workflow commands end at a newline and treat % as an escape.
        text = str(exc).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        print(f"::error title=codefactory::{text}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
