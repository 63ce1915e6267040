"""The pre-push hook, run by a real `git push` to a bare repository in a temp dir.

The LLM is the scripted loopback server; the hook process finds it through codefactory.yaml in
the work tree. codefactory is importable in hook processes through PYTHONPATH, so these tests
need no installed copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
import pytest
import yaml

from codefactory import hooks, pushes
from codefactory.errors import UsageError
from codefactory.gitrepo import GitRepo
from tests.gitrepos import commit_files, make_repo
from tests.servers import ScriptedServer

ROOT = Path(__file__).resolve().parents[1]
ZERO = "0" * 40
PUSH_BUDGET = 3.0  # seconds a non-strict push may take, whatever the update costs
WAIT = 90.0  # seconds to wait for a background update

SOURCES = {
    "app/orders.py": (
        "def place(order):\n"
        '    """Place an order and return its receipt."""\n'
        "    total = sum(item.price * item.quantity for item in order.items)\n"
        "    return {'total': total, 'status': 'placed'}\n\n\n"
        "def cancel(order):\n"
        "    order.status = 'cancelled'\n"
        "    return order\n"
    ),
    "app/users.py": (
        "class User:\n"
        "    def __init__(self, name):\n"
        "        self.name = name\n\n"
        "    def greet(self):\n"
        "        return f'hello {self.name}'\n"
    ),
}
EDITED_ORDERS = SOURCES["app/orders.py"].replace("'placed'", "'accepted'")


@dataclass
class Project:
    work: Path
    remote: Path
    repo: pygit2.Repository
    server: ScriptedServer
    env: dict[str, str]
    started_log_lines: list[str] = field(default_factory=list)

    @property
    def git_dir(self) -> Path:
        return self.work / ".git"

    @property
    def log(self) -> Path:
        return self.work / ".codefactory" / "hook.log"

    @property
    def manifest(self) -> dict:
        return json.loads((self.work / "data" / "manifest.json").read_text(encoding="utf-8"))

    def push(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return git(self.work, "push", "origin", *args, env={**self.env, **env})

    def remote_sha(self, branch: str) -> str | None:
        ref = pygit2.Repository(str(self.remote)).references.get(f"refs/heads/{branch}")
        return str(ref.target) if ref is not None else None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""

    def wait_finished(self, count: int) -> str:
        """The hook log once `count` updates have finished (background updates run on after the push)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            text = self.log_text()
            if text.count(" finished: exit ") >= count:
                return text
            time.sleep(0.1)
        pytest.fail(f"no {count} finished updates within {WAIT:.0f} s; hook.log:\n{self.log_text()}")

    def write_config(self, extra: str = "") -> None:
        (self.work / "codefactory.yaml").write_text(
            f"base_url: {self.server.base_url}\nmodel: scripted-model\nconcurrency: 1\n"
            "scene1:\n  qa_count: 1\nscene2:\n  count: 1\nllm:\n  max_retries: 1\n  timeout: 20\n" + extra,
            encoding="utf-8",
        )


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def base_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user's shell: nothing of the real user's git or codefactory settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CODEFACTORY_", "OPENAI_", "GIT_", "PRE_COMMIT_"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", OPENAI_API_KEY="test-key",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               CODEFACTORY_PYTHON=sys.executable)
    return env


@pytest.fixture
def project(tmp_path: Path, scripted_server: ScriptedServer) -> Iterator[Project]:
    work = tmp_path / "work"
    repo = make_repo(work, SOURCES, message="initial")
    remote = tmp_path / "remote.git"
    pygit2.init_repository(str(remote), bare=True, initial_head="main")
    repo.remotes.create("origin", str(remote))
    project = Project(work=work, remote=remote, repo=repo, server=scripted_server, env=base_env(tmp_path))
    project.write_config()
    yield project
    _stop_workers(project)


def _stop_workers(project: Project) -> None:
    """Background updates this test started must not outlive it (or its loopback server)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = project.log_text()
        if text.count(" started (pid ") <= text.count(" finished: exit "):
            return
        time.sleep(0.2)
    for pid in {int(p) for p in re.findall(r"started \(pid (\d+)\)", project.log_text())}:
        try:
            os.killpg(pid, signal.SIGTERM)  # the worker leads its own session: this reaches its child too
        except (ProcessLookupError, PermissionError):
            pass


def checkout_new_branch(repo: pygit2.Repository, name: str, at: str) -> None:
    branch = repo.branches.local.create(name, repo[at])
    repo.checkout(branch, strategy=pygit2.enums.CheckoutStrategy.FORCE)


# -- the shipped script ------------------------------------------------------------------------------


def test_shipped_hook_is_the_package_resource() -> None:
    shipped = ROOT / "hooks" / "pre-push"
    assert shipped.read_bytes() == (ROOT / "codefactory" / "resources" / "pre-push").read_bytes()
    assert shipped.read_text(encoding="utf-8") == hooks.hook_template()
    assert shipped.stat().st_mode & stat.S_IXUSR
    assert hooks.MARKER in hooks.hook_template()


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_hook_is_posix_shell(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    result = subprocess.run([shell, "-n", str(ROOT / "hooks" / "pre-push")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_pyproject_ships_the_hook_as_package_data() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith('"codefactory" = ['))
    assert '"resources/pre-push"' in line


# -- install / uninstall -----------------------------------------------------------------------------------


def test_install_marks_the_hook_and_makes_it_executable(tmp_path: Path) -> None:
    repo = GitRepo(make_repo(tmp_path / "r", SOURCES).workdir)
    message = hooks.install(repo.git_dir, strict=False)
    hook = repo.git_dir / "hooks" / "pre-push"
    assert str(hook) in message and "background" in message
    text = hook.read_text(encoding="utf-8")
    assert hooks.is_ours(hook) and os.access(hook, os.X_OK)
    assert f"INSTALL_PYTHON={sys.executable}\n" in text or f"INSTALL_PYTHON='{sys.executable}'\n" in text
    assert "STRICT=''\n" in text

    # Idempotent: the same file again, nothing moved aside; --strict switches the mode in place.
    hooks.install(repo.git_dir, strict=False)
    assert hook.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in hook.parent.glob("pre-push*")) == ["pre-push"]
    assert "strict" in hooks.install(repo.git_dir, strict=True)
    assert "STRICT=1\n" in hook.read_text(encoding="utf-8")
    assert not (hook.parent / "pre-push.legacy").exists()


def test_foreign_hook_is_kept_and_restored(tmp_path: Path) -> None:
    repo = GitRepo(make_repo(tmp_path / "r", SOURCES).workdir)
    hook = repo.git_dir / "hooks" / "pre-push"
    legacy = hook.with_name("pre-push.legacy")
    foreign = "#!/bin/sh\necho foreign\n"
    hook.write_text(foreign, encoding="utf-8")
    hook.chmod(0o755)

    assert "pre-push.legacy" in hooks.install(repo.git_dir, strict=False)
    assert legacy.read_text(encoding="utf-8") == foreign and hooks.is_ours(hook)
    hooks.install(repo.git_dir, strict=False)  # again: the kept hook is not overwritten by ours
    assert legacy.read_text(encoding="utf-8") == foreign

    assert "restored" in hooks.uninstall(repo.git_dir)
    assert hook.read_text(encoding="utf-8") == foreign and os.access(hook, os.X_OK)
    assert not legacy.exists()
    assert "not codefactory's" in hooks.uninstall(repo.git_dir)  # idempotent, and a foreign hook stays
    assert hook.read_text(encoding="utf-8") == foreign


def test_uninstall_without_a_hook_is_a_no_op(tmp_path: Path) -> None:
    repo = GitRepo(make_repo(tmp_path / "r", SOURCES).workdir)
    assert "nothing to do" in hooks.uninstall(repo.git_dir)
    hooks.install(repo.git_dir, strict=False)
    assert "removed" in hooks.uninstall(repo.git_dir)
    assert not (repo.git_dir / "hooks" / "pre-push").exists()
    assert "nothing to do" in hooks.uninstall(repo.git_dir)


def test_install_from_a_linked_worktree_uses_the_shared_hooks(tmp_path: Path) -> None:
    raw = make_repo(tmp_path / "r", SOURCES)
    raw.add_worktree("wt", str(tmp_path / "wt"))
    linked = GitRepo(tmp_path / "wt")
    assert linked.git_dir != Path(raw.path).resolve()
    hooks.install(linked.git_dir, strict=False)
    assert hooks.is_ours(Path(raw.path) / "hooks" / "pre-push")  # where git looks for every worktree
    assert "removed" in hooks.uninstall(linked.git_dir)


def test_install_refuses_to_overwrite_a_kept_hook(tmp_path: Path) -> None:
    repo = GitRepo(make_repo(tmp_path / "r", SOURCES).workdir)
    hook_dir = repo.git_dir / "hooks"
    (hook_dir / "pre-push").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    (hook_dir / "pre-push.legacy").write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    with pytest.raises(UsageError, match="pre-push.legacy already exists"):
        hooks.install(repo.git_dir, strict=False)
    assert (hook_dir / "pre-push.legacy").read_text(encoding="utf-8") == "#!/bin/sh\nexit 1\n"


# -- what a push means (real repositories, no push) ------------------------------------------------------------


def test_plan_updates_for_each_kind_of_ref(tmp_path: Path) -> None:
    raw = make_repo(tmp_path / "r", SOURCES)
    c1 = str(raw.head.target)
    c2 = commit_files(raw, {"app/orders.py": EDITED_ORDERS}, message="edit")
    checkout_new_branch(raw, "feature", c1)
    f1 = commit_files(raw, {"app/extra.py": "def extra():\n    return 42\n"}, message="feature")
    repo = GitRepo(raw.workdir)

    def plan(line: str) -> tuple[list[pushes.Update], list[str]]:
        return pushes.plan_updates(repo, pushes.parse_push_lines(line + "\n"))

    assert plan(f"refs/heads/main {c2} refs/heads/main {c1}")[0] == [pushes.Update("refs/heads/main", c1, c2)]
    # A new branch starts from its merge base with the default branch, not from the default's tip.
    assert plan(f"refs/heads/feature {f1} refs/heads/feature {ZERO}")[0] == [
        pushes.Update("refs/heads/feature", c1, f1)]
    # The default branch pushed for the first time: from the manifest (a full build without one).
    assert plan(f"refs/heads/main {c2} refs/heads/main {ZERO}")[0] == [pushes.Update("refs/heads/main", None, c2)]
    # A force push (the remote tip is not an ancestor) starts where the histories part.
    assert plan(f"refs/heads/feature {f1} refs/heads/feature {c2}")[0] == [
        pushes.Update("refs/heads/feature", c1, f1)]
    # Remote commits this clone never saw: from the manifest.
    assert plan(f"refs/heads/main {c2} refs/heads/main {'ab' * 20}")[0] == [pushes.Update("refs/heads/main", None, c2)]

    updates, notes = plan(f"(delete) {ZERO} refs/heads/feature {f1}")
    assert updates == [] and "deleted" in notes[0]
    updates, notes = plan(f"refs/tags/v1 {c2} refs/tags/v1 {ZERO}")
    assert updates == [] and "not a branch" in notes[0]
    updates, notes = plan(f"refs/heads/same {c1} refs/heads/same {ZERO}")  # nothing beyond main
    assert updates == [] and "no commits" in notes[0]
    assert plan("")[0] == [] and plan("garbage line")[0] == []
    # Two refs pushed at once with the same range run once.
    both = f"refs/heads/main {c2} refs/heads/main {c1}\nrefs/heads/alias {c2} refs/heads/main {c1}"
    assert len(plan(both)[0]) == 1


def test_strict_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hooks.strict_mode(False) is False and hooks.strict_mode(True) is True
    monkeypatch.setenv("CODEFACTORY_HOOK_STRICT", "1")
    assert hooks.strict_mode(False) is True
    monkeypatch.setenv("CODEFACTORY_HOOK_STRICT", "0")
    assert hooks.strict_mode(True) is False


# -- real pushes ------------------------------------------------------------------------------------------------


def test_push_returns_at_once_and_the_dataset_follows(project: Project) -> None:
    hooks.install(project.git_dir, strict=False)
    project.server.latency = 1.5  # every LLM reply takes 1.5 s: the update outlasts the push budget
    head = str(project.repo.head.target)

    start = time.monotonic()
    result = project.push("main")
    elapsed = time.monotonic() - start
    log_at_return = project.log_text()

    assert result.returncode == 0, result.stderr
    assert elapsed < PUSH_BUDGET, f"push took {elapsed:.1f} s"
    assert "updating the dataset in the background" in result.stderr
    assert " finished: exit " not in log_at_return  # the update was still running when the push returned
    assert project.remote_sha("main") == head

    log = project.wait_finished(1)
    assert f"update refs/heads/main manifest..{head[:12]} started" in log
    assert "finished: exit 0" in log, log
    assert project.server.chat_requests
    assert project.manifest["source_commit"] == head
    assert project.manifest["dataset_version"] == 1

    # The next push covers exactly the pushed range.
    project.server.latency = 0
    edited = commit_files(project.repo, {"app/orders.py": EDITED_ORDERS}, message="edit place")
    assert project.push("main").returncode == 0
    log = project.wait_finished(2)
    assert f"update refs/heads/main {head[:12]}..{edited[:12]} started" in log
    assert log.count("finished: exit 0") == 2, log
    assert project.manifest["source_commit"] == edited
    assert project.manifest["dataset_version"] == 2
    # hook.log stays out of `git status`.
    assert ".codefactory" not in git(project.work, "status", "--porcelain", env=project.env).stdout


def test_new_branch_push_starts_from_the_merge_base(project: Project) -> None:
    hooks.install(project.git_dir, strict=False)
    c1 = str(project.repo.head.target)
    assert project.push("main", CODEFACTORY_HOOK_STRICT="1").returncode == 0  # strict: the dataset is there now
    assert project.manifest["source_commit"] == c1
    finished = project.log_text().count(" finished: exit ")
    commit_files(project.repo, {"app/users.py": SOURCES["app/users.py"] + "\n# main moved on\n"}, message="main")
    checkout_new_branch(project.repo, "feature", c1)
    f1 = commit_files(project.repo, {"app/extra.py": "def extra(value):\n    return value * 42\n"}, message="feat")

    result = project.push("feature")
    assert result.returncode == 0, result.stderr
    log = project.wait_finished(finished + 1)
    assert f"update refs/heads/feature {c1[:12]}..{f1[:12]} started" in log
    assert log.rstrip().endswith("finished: exit 0"), log
    assert project.manifest["source_commit"] == f1
    assert project.remote_sha("feature") == f1


def test_delete_branch_push_updates_nothing(project: Project) -> None:
    hooks.install(project.git_dir, strict=False)
    head = str(project.repo.head.target)
    project.repo.branches.local.create("feature", project.repo[head])
    assert project.push("main", "feature", CODEFACTORY_HOOK_STRICT="1").returncode == 0
    started = project.log_text().count(" started (pid ")

    result = project.push("--delete", "feature")
    assert result.returncode == 0, result.stderr
    assert project.remote_sha("feature") is None
    log = project.log_text()
    assert "refs/heads/feature: deleted, nothing to update" in log
    assert log.count(" started (pid ") == started  # no update was started


@pytest.mark.parametrize("how", ["install", "env", "git-config"])
def test_strict_mode_failure_fails_the_push(project: Project, how: str) -> None:
    hooks.install(project.git_dir, strict=how == "install")
    extra_env = {"CODEFACTORY_HOOK_STRICT": "1"} if how == "env" else {}
    if how == "git-config":
        assert git(project.work, "config", "codefactory.hookStrict", "true", env=project.env).returncode == 0
    project.write_config("not_a_setting: 1\n")  # codefactory stops with a config error

    result = project.push("main", **extra_env)
    assert result.returncode != 0
    assert "dataset update failed" in result.stderr
    assert "not_a_setting" in result.stderr  # codefactory's own message reaches the user
    assert project.remote_sha("main") is None  # the push did not happen


def test_strict_failure_turned_off_lets_the_push_go(project: Project) -> None:
    hooks.install(project.git_dir, strict=True)
    project.write_config("not_a_setting: 1\n")
    result = project.push("main", CODEFACTORY_HOOK_STRICT="0")
    assert result.returncode == 0, result.stderr
    assert project.remote_sha("main") == str(project.repo.head.target)
    log = project.wait_finished(1)
    assert "finished: exit 0" not in log and "not_a_setting" in log


def test_strict_success_updates_before_the_push_returns(project: Project) -> None:
    hooks.install(project.git_dir, strict=True)
    result = project.push("main")
    assert result.returncode == 0, result.stderr
    assert project.manifest["source_commit"] == str(project.repo.head.target)
    assert "finished: exit 0" in project.log_text()


def test_foreign_hook_is_chained_in_a_real_push(project: Project, tmp_path: Path) -> None:
    hook = project.git_dir / "hooks" / "pre-push"
    seen = tmp_path / "seen"
    foreign = (
        "#!/bin/sh\n"
        f'echo "$1 $2" > "{seen}.args"\n'
        f'cat > "{seen}.stdin"\n'
        'exit "${FOREIGN_EXIT:-0}"\n'
    )
    hook.write_text(foreign, encoding="utf-8")
    hook.chmod(0o755)
    hooks.install(project.git_dir, strict=False)
    head = str(project.repo.head.target)

    result = project.push("main", CODEFACTORY_HOOK_STRICT="1")
    assert result.returncode == 0, result.stderr
    assert Path(f"{seen}.args").read_text().split() == ["origin", str(project.remote)]
    assert Path(f"{seen}.stdin").read_text() == f"refs/heads/main {head} refs/heads/main {ZERO}\n"
    assert project.manifest["source_commit"] == head

    # Its failure fails the push, as with pre-commit, and no update starts.
    started = project.log_text().count(" started (pid ")
    commit_files(project.repo, {"app/orders.py": EDITED_ORDERS}, message="edit")
    result = project.push("main", FOREIGN_EXIT="1")
    assert result.returncode != 0
    assert "pre-push.legacy failed" in result.stderr
    assert project.remote_sha("main") == head
    assert project.log_text().count(" started (pid ") == started

    hooks.uninstall(project.git_dir)
    assert hook.read_text(encoding="utf-8") == foreign and os.access(hook, os.X_OK)


def _system_path() -> str:
    """A PATH with git and the POSIX tools but neither this venv nor anything else that has codefactory."""
    dirs = [str(Path(shutil.which("git") or "/usr/bin/git").parent), "/usr/bin", "/bin"]
    return os.pathsep.join(dict.fromkeys(dirs))


def _copy_raw_hook(project: Project) -> None:
    """hooks/pre-push copied by hand, as a user without install-hook would (nothing templated)."""
    hook = project.git_dir / "hooks" / "pre-push"
    shutil.copy(ROOT / "hooks" / "pre-push", hook)
    hook.chmod(0o755)


def test_missing_codefactory_lets_the_push_go(project: Project, tmp_path: Path) -> None:
    _copy_raw_hook(project)
    legacy = project.git_dir / "hooks" / "pre-push.legacy"
    legacy.write_text(f'#!/bin/sh\ncat > "{tmp_path}/legacy.stdin"\n', encoding="utf-8")
    legacy.chmod(0o755)
    env = {k: v for k, v in project.env.items() if k not in ("PYTHONPATH", "CODEFACTORY_PYTHON")}
    env["PATH"] = _system_path()
    probe = subprocess.run(["sh", "-c", "command -v codefactory || python3 -c 'import codefactory'"],
                           cwd=project.work, env=env, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("codefactory is installed system-wide here, so it cannot be missing")

    result = git(project.work, "push", "origin", "main", env=env)
    assert result.returncode == 0, result.stderr
    assert "codefactory is not installed" in result.stderr
    assert project.remote_sha("main") == str(project.repo.head.target)
    assert "refs/heads/main" in (tmp_path / "legacy.stdin").read_text()  # the kept hook still ran
    assert not project.log.exists()


def test_codefactory_on_path_is_found(project: Project, tmp_path: Path) -> None:
    _copy_raw_hook(project)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "codefactory"  # what pip writes for a console script
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom codefactory.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    env = {k: v for k, v in project.env.items() if k != "CODEFACTORY_PYTHON"}
    env.update(PATH=os.pathsep.join([str(bin_dir), _system_path()]), CODEFACTORY_HOOK_STRICT="1")

    result = git(project.work, "push", "origin", "main", env=env)
    assert result.returncode == 0, result.stderr
    assert project.manifest["source_commit"] == str(project.repo.head.target)


# -- the pre-commit framework's entry ------------------------------------------------------------------------------


def test_pre_commit_hook_definition() -> None:
    (entry,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert entry["id"] == "codefactory-incremental"
    assert entry["stages"] == ["pre-push"]
    assert entry["language"] == "python"
    assert entry["pass_filenames"] is False and entry["always_run"] is True
    assert entry["entry"] == "python -m codefactory.hooks range"


def test_pre_commit_entry_takes_the_range_from_the_environment(project: Project) -> None:
    c1 = str(project.repo.head.target)
    assert project.push("main").returncode == 0  # no hook installed: nothing happens
    subprocess.run([sys.executable, "-m", "codefactory", "-q", "build"], cwd=project.work, env=project.env,
                   check=True, capture_output=True)
    c2 = commit_files(project.repo, {"app/orders.py": EDITED_ORDERS}, message="edit")
    entry = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))[0]["entry"].split()
    assert entry[0] == "python"
    env = {**project.env, "PRE_COMMIT_FROM_REF": c1, "PRE_COMMIT_TO_REF": c2,
           "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main", "CODEFACTORY_HOOK_STRICT": "1"}

    result = subprocess.run([sys.executable, *entry[1:]], cwd=project.work, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"update refs/heads/main {c1[:12]}..{c2[:12]} started" in project.log_text()
    assert project.manifest["source_commit"] == c2
