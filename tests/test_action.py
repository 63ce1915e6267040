"""The composite action: action.yml and the workflows parse and reference real inputs and outputs,
and the run and commit steps run for real with a simulated GitHub environment.

`python -m codefactory.action run|commit` is exactly what action.yml's shell steps execute; here
they get GITHUB_EVENT_PATH (a push event's JSON), GITHUB_OUTPUT and GITHUB_WORKSPACE as on a runner,
and the LLM is the scripted loopback server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pygit2
import pytest
import yaml

from codefactory import action
from tests.gitrepos import commit_files, make_repo
from tests.servers import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]
ZERO = "0" * 40
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SOURCES = {
    "shop/orders.py": (
        "def place(order):\n"
        '    """Place an order and return its receipt."""\n'
        "    total = sum(item.price * item.quantity for item in order.items)\n"
        "    return {'total': total, 'status': 'placed'}\n\n\n"
        "def cancel(order):\n"
        "    order.status = 'cancelled'\n"
        "    return order\n"
    ),
    "shop/users.py": "class User:\n    def __init__(self, name):\n        self.name = name\n",
}
EDITED_ORDERS = SOURCES["shop/orders.py"].replace("'cancelled'", "'void'")
SECRET = "sk-test-do-not-print-0123456789"


def load(path: Path) -> dict[str, Any]:
    # BaseLoader keeps every scalar a string, and `on:` stays the key "on" instead of True.
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)


def expressions(node: Any) -> list[str]:
    """Every `${{ ... }}` expression anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        return [e for k, v in node.items() for e in expressions(k) + expressions(v)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return EXPRESSION.findall(node) if isinstance(node, str) else []


# -- action.yml and the workflows, statically ------------------------------------------------------------


def test_action_declares_the_inputs_and_outputs_the_script_uses() -> None:
    spec = load(ROOT / "action.yml")
    assert tuple(spec["inputs"]) == action.INPUTS
    assert tuple(spec["outputs"]) == action.OUTPUTS
    assert spec["inputs"]["mode"]["default"] == "artifact"
    assert spec["runs"]["using"] == "composite"


def test_action_references_only_declared_inputs_and_real_step_outputs() -> None:
    spec = load(ROOT / "action.yml")
    steps = spec["runs"]["steps"]
    ids = {s["id"] for s in steps if "id" in s}
    for expr in expressions(spec):
        for name in re.findall(r"inputs\.([A-Za-z0-9_-]+)", expr):
            assert name in spec["inputs"], f"${{{{ {expr} }}}} names an undeclared input"
        for step, name in re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", expr):
            assert step in ids, f"${{{{ {expr} }}}} names a step that does not exist"
            assert name in action.OUTPUTS, f"${{{{ {expr} }}}} names an output the run step never writes"
    for name, output in spec["outputs"].items():
        assert EXPRESSION.fullmatch(output["value"].strip()).group(1) == f"steps.run.outputs.{name}"
    run_step = next(s for s in steps if s.get("id") == "run")
    assert run_step["run"].strip() == "python -m codefactory.action run"
    # Every input reaches the script, each under its INPUT_ name.
    for name in spec["inputs"]:
        variable = "INPUT_" + name.replace("-", "_").upper()
        assert run_step["env"][variable] == f"${{{{ inputs.{name} }}}}"


def test_action_steps_never_paste_expressions_into_shell_code() -> None:
    # An input spliced into `run:` would be executed as shell by whoever can set it.
    for step in load(ROOT / "action.yml")["runs"]["steps"]:
        if "run" in step:
            assert "${{" not in step["run"], step["run"]
            assert step["shell"] == "bash"


def test_action_uses_setup_python_cache_and_upload_artifact() -> None:
    steps = load(ROOT / "action.yml")["runs"]["steps"]
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert set(uses) == {"actions/setup-python", "actions/cache", "actions/upload-artifact"}
    assert uses["actions/setup-python"]["with"]["python-version"] == "${{ inputs.python-version }}"
    assert uses["actions/cache"]["with"]["path"] == ".codefactory/cache"
    assert uses["actions/upload-artifact"]["with"]["path"] == "${{ steps.run.outputs.dataset-path }}"
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    commit = next(s for s in steps if s.get("run", "").strip() == "python -m codefactory.action commit")
    assert "commit" in commit["if"] and "both" in commit["if"]


def test_ci_workflow_runs_the_tests_on_every_supported_python() -> None:
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    (job,) = ci["jobs"].values()
    assert job["strategy"]["matrix"]["python-version"] == ["3.10", "3.11", "3.12", "3.13"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert any("bash .ci/run" in r for r in runs)
    assert any(s.get("uses", "").startswith("actions/checkout@") for s in job["steps"])
    for expr in expressions(ci):
        assert expr.startswith("matrix.") or expr.startswith("secrets."), expr


def test_dataset_workflow_runs_the_action_on_pushes_to_main() -> None:
    spec = load(ROOT / "action.yml")
    workflow = load(ROOT / ".github" / "workflows" / "dataset.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    (job,) = workflow["jobs"].values()
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["uses"] == "actions/checkout@v4"
    assert checkout["with"]["fetch-depth"] == "0"
    ours = next(s for s in job["steps"] if s.get("uses") == "./")
    assert set(ours["with"]) <= set(spec["inputs"])
    assert ours["with"]["mode"] in action.MODES
    for expr in expressions(workflow):
        for step, name in re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", expr):
            assert step == ours["id"] and name in spec["outputs"], expr
    assert workflow["permissions"]["contents"] == "write"  # commit mode pushes


# -- the run and commit steps, for real ---------------------------------------------------------------------------


class Runner:
    """A simulated GitHub runner: a checkout of a pushed repository plus the files GitHub provides."""

    def __init__(self, tmp_path: Path, server: ScriptedServer) -> None:
        self.tmp = tmp_path
        self.server = server
        self.origin = tmp_path / "origin.git"
        self.author = make_repo(tmp_path / "author", SOURCES, message="initial")
        self.author.remotes.create("origin", str(self.origin))
        pygit2.init_repository(str(self.origin), bare=True, initial_head="main")
        self.workspace = tmp_path / "workspace"
        self.event = tmp_path / "event.json"
        self.output = tmp_path / "github_output"
        home = tmp_path / "home"
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CODEFACTORY_", "OPENAI_", "GIT_", "GITHUB_", "INPUT_"))}
        self.env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

    @property
    def head(self) -> str:
        return str(self.author.head.target)

    def push(self) -> None:
        result = git(Path(self.author.workdir), "push", "-q", "origin", "main", env=self.env)
        assert result.returncode == 0, result.stderr

    def checkout(self, *, depth: int | None = None, into: str = "workspace") -> None:
        """What actions/checkout does: a fresh clone of the pushed branch (fetch-depth 0 unless depth)."""
        self.workspace = self.tmp / into
        args = ["clone", "-q", "--branch", "main"] + (["--depth", str(depth)] if depth else [])
        result = git(self.tmp, *args, f"file://{self.origin}", str(self.workspace), env=self.env)
        assert result.returncode == 0, result.stderr
        (self.workspace / "codefactory.yaml").write_text(
            "concurrency: 1\nscene1:\n  qa_count: 1\nscene2:\n  count: 1\nllm:\n  max_retries: 1\n", encoding="utf-8")

    def run_step(self, step: str, *, before: str | None, **inputs: str) -> subprocess.CompletedProcess[str]:
        event = {"ref": "refs/heads/main", "after": self.head}
        if before is not None:
            event["before"] = before
        self.event.write_text(json.dumps(event), encoding="utf-8")
        self.output.write_text("", encoding="utf-8")
        env = {**self.env, "GITHUB_EVENT_PATH": str(self.event), "GITHUB_OUTPUT": str(self.output),
               "GITHUB_WORKSPACE": str(self.workspace), "GITHUB_SHA": self.head, "GITHUB_REF": "refs/heads/main",
               "GITHUB_EVENT_NAME": "push", "INPUT_BASE_URL": self.server.base_url, "INPUT_MODEL": "scripted-model",
               "INPUT_API_KEY": SECRET, "INPUT_MODE": "artifact", "INPUT_OUTPUT_DIR": "data"}
        env.update({"INPUT_" + k.upper(): v for k, v in inputs.items()})
        # The step's shell command, run in the workspace as the runner does.
        return subprocess.run([sys.executable, "-m", "codefactory.action", step], cwd=self.workspace, env=env,
                              capture_output=True, text=True, timeout=300)

    def outputs(self) -> dict[str, str]:
        lines = self.output.read_text(encoding="utf-8").splitlines()
        return dict(line.split("=", 1) for line in lines)


def git(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def runner(tmp_path: Path, scripted_server: ScriptedServer) -> Runner:
    return Runner(tmp_path, scripted_server)


def test_run_step_builds_then_updates_and_sets_the_outputs(runner: Runner) -> None:
    runner.push()
    runner.checkout()
    # The first push of a branch: `before` is all zeros, so a full build.
    result = runner.run_step("run", before=ZERO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "full build" in result.stdout
    first = runner.outputs()
    assert set(first) == set(action.OUTPUTS)
    assert first["dataset-version"] == "1"
    assert int(first["samples-added"]) > 0 and first["samples-retired"] == "0"
    assert Path(first["dataset-path"]) == runner.workspace / "data"
    assert (runner.workspace / "data" / "manifest.json").is_file()
    # The key went to the endpoint through the environment, and nowhere into the step's output.
    assert runner.server.chat_requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in result.stdout + result.stderr

    # The next push: `before` is the previous head; one function changed.
    before = runner.head
    commit_files(runner.author, {"shop/orders.py": EDITED_ORDERS}, message="edit cancel")
    runner.push()
    assert git(runner.workspace, "pull", "-q", "--ff-only", "origin", "main", env=runner.env).returncode == 0
    requests = len(runner.server.chat_requests)
    result = runner.run_step("run", before=before)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"--since {before}" in result.stdout
    second = runner.outputs()
    assert second["dataset-version"] == "2"
    assert int(second["samples-added"]) > 0 and int(second["samples-retired"]) > 0
    assert len(runner.server.chat_requests) > requests
    manifest = json.loads((runner.workspace / "data" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["source_commit"] == runner.head


def test_run_step_without_a_dataset_does_a_full_build(runner: Runner) -> None:
    # Artifact mode keeps no dataset between runs; the restored cache makes the rebuild cheap.
    commit_files(runner.author, {"shop/orders.py": EDITED_ORDERS}, message="edit")
    before = str(runner.author.head.peel(pygit2.Commit).parents[0].id)
    runner.push()
    runner.checkout()
    result = runner.run_step("run", before=before)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no dataset" in result.stdout and "--since" not in result.stdout
    assert runner.outputs()["dataset-version"] == "1"


def test_run_step_in_a_shallow_clone_says_to_fetch_everything(runner: Runner) -> None:
    first = runner.head
    runner.push()
    runner.checkout()
    assert runner.run_step("run", before=ZERO).returncode == 0  # a dataset to start from
    commit_files(runner.author, {"shop/orders.py": EDITED_ORDERS}, message="edit")
    runner.push()
    dataset = runner.workspace / "data"
    runner.checkout(depth=1, into="shallow")  # actions/checkout's default depth: `before` is not fetched
    dataset.rename(runner.workspace / "data")  # as if commit mode had kept the dataset in the repository

    result = runner.run_step("run", before=first)
    assert result.returncode == 2
    assert "::error" in result.stdout and "fetch-depth: 0" in result.stdout
    assert runner.outputs() == {}


def test_commit_mode_commits_the_dataset_back(runner: Runner) -> None:
    runner.push()
    runner.checkout()
    assert runner.run_step("run", before=ZERO, mode="commit").returncode == 0
    result = runner.run_step("commit", before=ZERO, mode="commit")
    assert result.returncode == 0, result.stdout + result.stderr

    origin = pygit2.Repository(str(runner.origin))
    tip = origin.references["refs/heads/main"].peel(pygit2.Commit)
    assert tip.message.strip() == f"codefactory: dataset v1 for {runner.head[:12]}"
    assert str(tip.parents[0].id) == runner.head
    assert "manifest.json" in [e.name for e in tip.tree["data"]]
    assert "github-actions[bot]" in tip.author.name
    assert "codefactory.yaml" not in [e.name for e in tip.tree]  # only the dataset is committed

    # Nothing new: nothing to commit.
    result = runner.run_step("commit", before=ZERO, mode="commit")
    assert result.returncode == 0 and "nothing to commit" in result.stdout


@pytest.mark.parametrize("inputs, message", [
    ({"mode": "upload"}, "mode must be one of"),
    ({"scenes": "scene3"}, "scenes must list"),
    ({"since": "no-such-revision"}, "unknown revision"),
])
def test_bad_inputs_fail_with_an_error_annotation(runner: Runner, inputs: dict[str, str], message: str) -> None:
    runner.push()
    runner.checkout()
    result = runner.run_step("run", before=ZERO, **inputs)
    assert result.returncode != 0
    assert "::error" in result.stdout + result.stderr or "error" in result.stderr
    assert message in result.stdout + result.stderr
    assert not (runner.workspace / "data").exists()


def test_scenes_switch_the_other_scene_off() -> None:
    env = {"INPUT_SCENES": "scene1"}
    assert action._child_env(env)["CODEFACTORY_SCENE2_COUNT"] == "0"
    env = {"INPUT_SCENES": "scene2", "INPUT_API_KEY": SECRET}
    child = action._child_env(env)
    assert child["CODEFACTORY_SCENE1_LIMIT"] == "0" and "CODEFACTORY_SCENE2_COUNT" not in child
    assert child["OPENAI_API_KEY"] == SECRET and "INPUT_API_KEY" not in child
    # An empty api-key input leaves a key from the job's environment alone.
    assert action._child_env({"OPENAI_API_KEY": "from-job"})["OPENAI_API_KEY"] == "from-job"
