"""Bad input through the command line: a one-line error with exit code 2 and nothing written, or a skip
with its reason. Most cases run `codefactory.cli.main()` in this process (fast); the cache warnings need
the CLI's own logging setup, so those run `python -m codefactory`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pygit2
import pytest

from codefactory.cache import ReplyCache
from codefactory.cli import main
from tests.cli_runs import cli_env, codefactory, make_project, read_lines
from tests.conftest import free_port
from tests.gitrepos import commit_links, make_repo
from tests.servers import ScriptedServer

KEY = "sk-proj-badinputTESTKEY4f9a8b7c6d5e4f3a2b1c"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`run(*args)` -> (exit code, stdout, stderr) of codefactory's main() in this process."""

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["codefactory", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def assert_one_line_error(code: int, err: str, *expected: str) -> str:
    assert code == 2, err
    message = err.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("codefactory: error: ")
    for text in expected:
        assert text in message, message
    return message


# -- repositories -----------------------------------------------------------------------------------------


def test_not_a_git_repository(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("--repo", str(tmp_path), "build")
    assert_one_line_error(code, err, "not a git repository")
    assert not (tmp_path / "data").exists()


def test_empty_repository(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    make_repo(tmp_path / "empty")
    for command in ("scan", "build", "incremental"):
        code, _, err = run("--repo", str(tmp_path / "empty"), "-q", command)
        assert_one_line_error(code, err, "no commits")
    assert not (tmp_path / "empty" / "data").exists()


def test_missing_repository_path(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("--repo", str(tmp_path / "nowhere"), "build")
    assert_one_line_error(code, err)


def test_unknown_revision(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    repo = make_project(tmp_path / "ledger", 1)
    code, _, err = run("--repo", str(repo), "--rev", "no-such-branch", "-q", "build", "--dry-run")
    assert_one_line_error(code, err, "no-such-branch")
    assert not (repo / "data").exists()


# -- files that are skipped, each with its reason ----------------------------------------------------------

SKIPPED = {
    "assets/logo.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "binary"),
    "assets/blob.dat": (b"header\x00\x01\x02 binary payload", "binary"),
    "src/nul.py": (b"def f():\n    return 1\x00\n", "binary"),  # NUL bytes are binary, whatever the extension
    "src/latin1.py": ("# caf\u00e9 r\u00e9sum\u00e9\nNAME = 'na\u00efve'\n".encode("latin-1"), "not UTF-8 text"),
    "src/utf16.py": ("x = 1\n".encode("utf-16"), "not UTF-8 text"),
    "web/app.min.js": (b"var a=1;" * 50, "minified"),
    "web/bundle.js": (b"function a(){return 1};" * 400, "minified"),  # one 9 KB line, no .min. in the name
    "src/huge.py": (b"# filler\n" * 130_000, "over size limit"),
    ".env": (b"DATABASE_URL=postgres://u:p@h/db\n", "may contain secrets"),
    "deploy/id_rsa": (b"not really a key\n", "may contain secrets"),
    "deploy/server.pem": (b"not really a cert\n", "may contain secrets"),
}


def test_scan_verbose_names_every_skip_with_its_reason(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    repo = make_project(tmp_path / "ledger", 1, extra={path: content for path, (content, _) in SKIPPED.items()})
    git = pygit2.Repository(str(repo))
    commit_links(git, symlinks={"links/outside": "../../../etc/passwd", "links/inside": "../ledger/part0.py"},
                 submodules={"vendorlib": "0123456789abcdef0123456789abcdef01234567"})

    code, out, err = run("--repo", str(repo), "-v", "scan")

    assert code == 0, err
    reasons = dict(line.removeprefix("skipped ").split(": ", 1) for line in err.splitlines()
                   if line.startswith("skipped "))
    for path, (_, reason) in SKIPPED.items():
        assert reasons.get(path, "").startswith(reason), (path, reasons.get(path))
    assert reasons["links/outside"] == "symlink leaves the repository"
    assert reasons["links/inside"] == "symlink"
    assert reasons["vendorlib"] == "submodule"
    assert "ledger/part0.py\tpython" in out.splitlines()
    assert not any(path in out for path in [*SKIPPED, "links/", "vendorlib"])


def test_a_build_goes_on_past_skipped_files(tmp_path: Path, run, server: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    repo = make_project(tmp_path / "ledger", 1, extra={path: content for path, (content, _) in SKIPPED.items()})
    commit_links(pygit2.Repository(str(repo)), symlinks={"links/outside": "/etc/passwd"},
                 submodules={"vendorlib": "0123456789abcdef0123456789abcdef01234567"})

    code, _, err = run("--repo", str(repo), "--base-url", server.base_url, "-q", "build", "--count", "1")

    assert code == 0, err
    chunked = {c["path"] for c in json.loads((repo / "data" / "chunks.json").read_text())}
    assert chunked == {"README.md", "ledger/part0.py"}


ODD_PATHS = {
    "dir with spaces/my module.py": "def spaced(value):\n    \"\"\"Doubles a value, if positive.\"\"\"\n    return value * 2 if value > 0 else 0\n",
    "ünïcødé/ファイル.py": "def unicode_name(x):\n    \"\"\"Adds one.\"\"\"\n    return x + 1\n",
    "quote'and\"double.py": "def quoted(a, b):\n    \"\"\"The larger of two.\"\"\"\n    return a if a > b else b\n",
    "new\nline.py": "def newline_in_path(items):\n    \"\"\"Counts items.\"\"\"\n    return len(items)\n",
    "-leading-dash.py": "def dashed(s):\n    \"\"\"Upper-cases a string.\"\"\"\n    return s.upper()\n",
}


def test_paths_with_odd_characters_go_through(tmp_path: Path, run, server: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "odd"
    make_repo(repo, ODD_PATHS)

    code, _, err = run("--repo", str(repo), "--base-url", server.base_url, "-q", "build", "--count", "1")

    assert code == 0, err
    out = repo / "data"
    chunks = json.loads((out / "chunks.json").read_text(encoding="utf-8"))
    assert {c["path"] for c in chunks} == set(ODD_PATHS)
    sources = {r["source"]["path"] for r in read_lines(out / "scene1_raw.jsonl")}
    assert sources == set(ODD_PATHS)
    assert sorted(p.name for p in out.iterdir() if "line" in p.name or "dash" in p.name) == []  # no file named after one

    code, listing, err = run("--repo", str(repo), "scan")
    assert code == 0, err
    lines = listing.splitlines()
    assert len(lines) == len(ODD_PATHS)  # one line each, the newline too
    assert {"dir with spaces/my module.py\tpython", "ünïcødé/ファイル.py\tpython", '"new\\nline.py"\tpython'} <= set(lines)


# -- configuration ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("concurrency: 4\nscene1:\n  qa_count: 3\n\tseed: 2\n", ("codefactory.yaml", "invalid YAML at line 4")),
    ("concurrency: 4\nscene1:\n  qa_cont: 3\n", ("codefactory.yaml:3", "unknown setting 'scene1.qa_cont'")),
    ("concurrency: many\n", ("codefactory.yaml:1", "'concurrency'")),
    ("- just\n- a list\n", ("codefactory.yaml", "line 1", "mapping")),
    ("api_key: sk-do-not-store-keys-here\n", ("codefactory.yaml:1", "'api_key' must not be stored in a file")),
])
def test_malformed_config_names_the_key_and_line(
    tmp_path: Path, run, yaml_text: str, expected: tuple[str, ...]  # type: ignore[no-untyped-def]
) -> None:
    repo = make_project(tmp_path / "ledger", 1, extra={"codefactory.yaml": yaml_text})
    code, _, err = run("--repo", str(repo), "-q", "build", "--dry-run")
    message = assert_one_line_error(code, err, *expected)
    assert "sk-do-not-store" not in message
    assert not (repo / "data").exists()


def test_bad_setting_in_the_environment(tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    repo = make_project(tmp_path / "ledger", 1)
    monkeypatch.setenv("CODEFACTORY_LLM_TIMEOUT", "soon")
    code, _, err = run("--repo", str(repo), "-q", "build", "--dry-run")
    assert_one_line_error(code, err, "CODEFACTORY_LLM_TIMEOUT")


# -- the endpoint -----------------------------------------------------------------------------------------


def test_unreachable_endpoint_is_named_without_the_key(tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    repo = make_project(tmp_path / "ledger", 1)
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for model in ((), ("--model", "some-model")):  # asked for the server's model first, or not
        code, out, err = run("--repo", str(repo), "--base-url", url, *model, "-q", "build")
        message = assert_one_line_error(code, err, f"cannot reach the LLM endpoint at {url}")
        assert KEY not in message + out
    assert not (repo / "data").exists()


def test_rejected_key_is_named_without_the_key(tmp_path: Path, run, server: ScriptedServer,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_project(tmp_path / "ledger", 1)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.add_faults("401", "401")
    code, out, err = run("--repo", str(repo), "--base-url", server.base_url, "-q", "build")
    message = assert_one_line_error(code, err, f"the LLM endpoint at {server.base_url} rejected the API key")
    assert KEY not in message + out
    assert not (repo / "data").exists()


# -- the cache --------------------------------------------------------------------------------------------


def test_a_corrupt_cache_is_rebuilt_with_a_warning(tmp_path: Path, server: ScriptedServer) -> None:
    repo = make_project(tmp_path / "ledger", 1)
    env = cli_env(CODEFACTORY_BASE_URL=server.base_url)
    assert codefactory(repo, "scene1", "--qa-count", "1", env=env).returncode == 0
    cache = repo / ".codefactory" / "cache"
    for db in cache.glob("cache.db*"):
        db.write_bytes(b"this is not an SQLite database" * 100)
    before = len(server.chat_requests)

    result = codefactory(repo, "scene1", "--qa-count", "1", env=env)

    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "was unreadable" in result.stderr and "rebuilt it empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(server.chat_requests) - before == 3  # asked again; the dataset already had them
    assert len(read_lines(repo / "data" / "scene1_raw.jsonl")) == 3
    assert codefactory(repo, "scene1", "--qa-count", "1", env=env).returncode == 0
    assert len(server.chat_requests) - before == 3  # and cached again


@pytest.mark.parametrize("marked", [True, False])
def test_an_incompatible_cache_is_rebuilt_with_a_warning(tmp_path: Path, server: ScriptedServer, marked: bool) -> None:
    repo = make_project(tmp_path / "ledger", 1)
    env = cli_env(CODEFACTORY_BASE_URL=server.base_url)
    with diskcache.Cache(str(repo / ".codefactory" / "cache")) as old:  # what an older codefactory left
        if marked:
            old.set("__codefactory_format__", 0)
        old.set("0" * 64, {"format": 0, "value": "an old layout"})

    result = codefactory(repo, "scene1", "--qa-count", "1", env=env)

    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "written in format 0" in result.stderr, result.stderr
    assert len(server.chat_requests) == 3
    reopened = ReplyCache(repo / ".codefactory" / "cache")
    try:
        assert reopened.warning is None and "0" * 64 not in reopened
    finally:
        reopened.close()


def test_an_unreadable_cache_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "cache")
    try:
        cache._cache.set("k" * 64, b"\x80\x04 not a pickle")  # raw bytes where a dict should be
        cache._cache.set("j" * 64, {"format": 1})  # the right format, no reply
        assert cache.get("k" * 64) is None and cache.get("j" * 64) is None and cache.get("z" * 64) is None
    finally:
        cache.close()
