"""`codefactory build` end to end with the real bundled model: no scripted replies anywhere.

The repository is the standard library's json package committed into a temporary git repo;
generation runs (a) through the openai backend against a real `llama_cpp.server`, (b) through
the in-process llama.cpp backend, (c) through `backend: auto` with no key or endpoint.
Limits are small so that the three runs take a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from codefactory.llm import GenerationParams, LLMSettings
from codefactory.llm_local import LocalBackend
from codefactory.scene1 import scene1_schema
from codefactory.scene2 import SCHEMA as SCENE2_SCHEMA
from tests.conftest import require_bundled_model
from tests.gitrepos import make_repo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PAIR_SCHEMA = scene1_schema(1)["properties"]["pairs"]["items"]
SCENE1_FIELDS = ("question", "thinking_trace", "answer")
# Short replies keep the runs short (the schemas' minimum lengths fit easily); a reply cut off at
# the limit is a listed failure, not a broken run. A low temperature keeps the tiny model's replies
# from wandering (bench/README.md). Generous timeouts: CI machines may be busy.
ENV = {"CODEFACTORY_LLM_MAX_TOKENS": "640", "CODEFACTORY_LLM_TEMPERATURE": "0.2"}
TIMEOUT = 1200


@pytest.fixture
def json_repo(tmp_path: Path) -> Path:
    """A real repository holding a copy of the stdlib json package (real code, ~1k lines)."""
    package = Path(json.__file__).parent
    files = {f"json/{p.name}": p.read_text(encoding="utf-8") for p in sorted(package.glob("*.py"))}
    root = tmp_path / "jsonpkg"
    make_repo(root, files, message="json package")
    return root


def codefactory(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with no key and no endpoint in the environment."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL") and not k.startswith("CODEFACTORY_")}
    environ.update(ENV | (env or {}))
    return subprocess.run([sys.executable, "-m", "codefactory", "--repo", str(repo), "-q", *args],
                          capture_output=True, text=True, cwd=ROOT, env=environ, timeout=timeout)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_run(result: subprocess.CompletedProcess[str], repo: Path, backend: str) -> list[dict[str, Any]]:
    """Asserts what any finished build must show; returns the Scene-1 raw records."""
    # A 135M model may fail a sample even under grammar; then the run says which and exits 1.
    assert result.returncode in (0, 1), result.stderr
    if result.returncode == 1:
        assert "failed: " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

    out = repo / "data"
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    chunks = {c["id"]: c for c in json.loads((out / "chunks.json").read_text())}
    scene1 = read_jsonl(out / "scene1_raw.jsonl") if (out / "scene1_raw.jsonl").exists() else []
    scene2 = read_jsonl(out / "scene2_raw.jsonl") if (out / "scene2_raw.jsonl").exists() else []
    assert scene1 or scene2, result.stderr

    for record in scene1:
        jsonschema.validate({k: record[k] for k in SCENE1_FIELDS}, PAIR_SCHEMA)
        assert all(record[k].strip() for k in SCENE1_FIELDS)
        source = record["source"]
        assert source["commit"] == head and source["repo"] == "jsonpkg"
        chunk = chunks[source["chunk_id"]]
        assert (source["path"], source["chunk_sha256"], source["start_line"]) == (
            chunk["path"], chunk["sha256"], chunk["start_line"])
        assert (repo / source["path"]).is_file()
    for record in scene2:
        jsonschema.validate({k: record[k] for k in ("requirement", "thinking_trace", "proposal")}, SCENE2_SCHEMA)
        assert record["source"]["commit"] == head and record["source"]["modules"]
    for record in scene1 + scene2:
        generation = record["generation"]
        assert generation["backend"] == backend and generation["model"]
        assert generation["prompt_version"].startswith(record["scene"] + "@")
        assert len(generation["cache_key"]) == 64 and generation["created_at"]

    # The quality gate may keep a tiny model's samples out of the SFT files; those it keeps are real ones.
    combined = read_jsonl(out / "combined_sft.jsonl")
    quality = json.loads((out / "quality.json").read_text())
    assert quality["counts"]["live"] == len(scene1) + len(scene2)
    assert len(combined) == quality["counts"]["kept"]
    assert {s["id"] for s in combined} <= {r["id"] for r in scene1 + scene2}
    for sample in combined:
        roles = [m["role"] for m in sample["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert sample["messages"][2]["content"].startswith("<think>\n")
        assert sample["meta"]["dataset_version"] == 1
    assert (out / "scene1_sft.jsonl").is_file() and (out / "scene2_sft.jsonl").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["backend"] == backend and manifest["source_commit"] == head
    return scene1


def test_build_through_openai_backend_against_llama_cpp_server(json_repo: Path, llama_server: str) -> None:
    # The server answers one request at a time, so one at a time it gets. The Scene-2 schema's long
    # strings would crash this server's grammar if the backend sent them as they are.
    result = codefactory(json_repo, "--base-url", llama_server, "--concurrency", "1",
                         "build", "--limit", "1", "--qa-count", "1", "--count", "1",
                         env={"CODEFACTORY_LLM_MAX_TOKENS": "1024"})  # room for a whole proposal

    scene1 = check_run(result, json_repo, "openai")
    assert scene1, result.stderr
    # llama_cpp.server answers json_schema with HTTP 500: the backend must have moved to the
    # mode it takes on the first request, and every later request used it without failing.
    assert "falls back to response_format mode json_object_schema" in result.stderr
    assert "server error 500" not in result.stderr
    assert all(r["generation"]["model"].endswith(".gguf") for r in scene1)  # the served model, asked by /models


def test_build_with_the_embedded_model(json_repo: Path) -> None:
    require_bundled_model()
    # Scene-2 costs most of a build's time with this model; its grammar is checked below, its
    # generation in the server test above.
    result = codefactory(json_repo, "--backend", "local", "build", "--limit", "2", "--qa-count", "1", "--count", "0")

    scene1 = check_run(result, json_repo, "local")
    assert scene1, result.stderr
    assert {r["generation"]["model"] for r in scene1} == {require_bundled_model().stem}

    # Same input, model and parameters: the cache answers, nothing changes, no model call.
    again = codefactory(json_repo, "--backend", "local", "build", "--limit", "2", "--qa-count", "1", "--count", "0")
    assert again.returncode == 0, again.stderr
    assert "LLM calls 0" in again.stderr and "dataset unchanged" in again.stderr


def test_auto_backend_without_key_uses_the_embedded_model(json_repo: Path) -> None:
    require_bundled_model()
    planned = codefactory(json_repo, "scene1", "--limit", "1", "--qa-count", "1", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    (request,) = read_jsonl(json_repo / "data" / "dry_run_requests.jsonl")
    assert request["backend"] == "local"

    result = codefactory(json_repo, "scene1", "--limit", "1", "--qa-count", "1")
    assert check_run(result, json_repo, "local")

    # With an endpoint configured, auto means that endpoint instead (planned only: no call).
    with_endpoint = codefactory(json_repo, "scene1", "--limit", "1", "--dry-run",
                                env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "CODEFACTORY_MODEL": "m"})
    assert with_endpoint.returncode == 0, with_endpoint.stderr
    assert read_jsonl(json_repo / "data" / "dry_run_requests.jsonl")[0]["backend"] == "openai"


def test_local_backend_takes_every_scene_schema_and_trims_long_prompts() -> None:
    llm = LocalBackend(LLMSettings(backend="local", model_path=str(require_bundled_model()), n_ctx=1024))
    try:
        # As llama_cpp spells them, these schemas' long strings make grammars llama.cpp cannot parse
        # (and the process then crashes); the backend's own grammar must be accepted.
        for schema in (scene1_schema(3), SCENE2_SCHEMA):
            assert llm._grammar(schema) is not None

        code = "\n".join(f"    total_{i} = step_{i}(total_{i - 1})" for i in range(1, 400))
        assert llm.count_tokens(code) > 2 * llm.n_ctx
        messages = [{"role": "system", "content": "Describe the code in JSON."},
                    {"role": "user", "content": f"File: calc.py\n```python\ndef run(total_0):\n{code}\n```\nName its function."}]
        schema = {"type": "object", "properties": {"function": {"type": "string", "minLength": 2, "maxLength": 40}},
                  "required": ["function"]}
        completion = llm.complete(messages, schema, GenerationParams(temperature=0.2, max_tokens=64, seed=1))
    finally:
        llm.close()
    assert json.loads(completion.text)["function"]
    assert completion.usage.prompt_tokens + completion.usage.completion_tokens <= 1024
