"""A lean OpenAI-compatible server on 127.0.0.1 with a fixed latency, for the benchmarks.

It answers every chat completion with a schema-valid reply (tests/servers.py's `synthesize`), after
sleeping `latency` seconds, and counts requests per scene so a benchmark can check what was sent.
It runs in its own process (`LoopbackLLM`), on asyncio (one thread, ~0.5 ms of CPU a request): its CPU
time never competes with the pipeline's GIL, which matters for the zero-latency figure on 2 cores.

    with LoopbackLLM(latency=1.0) as server:
        ...  # base_url=server.base_url
        server.stats()  # {"scene1": 12, "scene2": 1, "prompt_chars": ..., ...}; server.reset()
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import _schema_of, _words, synthesize  # noqa: E402

MODEL = "bench-model"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy



def _reply(body: dict[str, Any], counts: Counter[str]) -> dict[str, Any]:
    messages = body.get("messages") or []
    schema = _schema_of(body.get("response_format") or {})
    # Each scene asks for its own reply shape: Q&A pairs, a proposal, or scores (the judge).
    fields = set((schema or {}).get("properties", {}))
    scene = "scene1" if "pairs" in fields else "scene2" if "proposal" in fields else "other"
    content = json.dumps(synthesize(schema, _words(messages)) if schema else {})
    prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
    counts[scene] += 1
    counts["requests"] += 1
    counts["prompt_chars"] += prompt_chars
    return {
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4,
                  "total_tokens": prompt_chars // 4 + len(content) // 4},
    }


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float,
                  counts: Counter[str]) -> None:
    """HTTP/1.1 with keep-alive, just what an OpenAI client sends: one coroutine per connection, no threads."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path = request_line.split(" ")[:2]
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            status, payload = 200, {}
            if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                if latency:
                    await asyncio.sleep(latency)
                payload = _reply(json.loads(body or b"{}"), counts)
            elif path.rstrip("/").endswith("/models"):
                payload = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
            elif path == "/bench/stats":
                payload = dict(counts)
            elif path == "/bench/reset":
                counts.clear()
            else:
                status, payload = 404, {"error": {"message": "no route"}}
            data = json.dumps(payload).encode()
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed its connection
    finally:
        writer.close()


async def _serve(latency: float, max_seconds: float) -> None:
    counts: Counter[str] = Counter()
    server = await asyncio.start_server(lambda r, w: _handle(r, w, latency, counts), "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    # A benchmark that dies must not leave a server behind: stop on a deadline or when stdin closes.
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed, asyncio.ensure_future(asyncio.sleep(max_seconds))],
                       return_when=asyncio.FIRST_COMPLETED)
    # Nothing to flush or save: exit at once, open connections and a blocked stdin reader included.
    os._exit(0)


def serve(latency: float, max_seconds: float) -> None:
    """Serve on an ephemeral loopback port, print it, and stop when stdin closes or after `max_seconds`."""
    asyncio.run(_serve(latency, max_seconds))


class LoopbackLLM:
    """The server in a child process; `base_url` for the pipeline, `stats()`/`reset()` for the benchmark."""

    def __init__(self, latency: float = 0.0, max_seconds: float = 3600.0) -> None:
        self.latency = latency
        self.max_seconds = max_seconds
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> "LoopbackLLM":
        self._proc = subprocess.Popen([sys.executable, __file__, str(self.latency), str(self.max_seconds)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _get(self, path: str) -> dict[str, int]:
        with _DIRECT.open(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (Linux /proc; 0 elsewhere): is the server the bottleneck?"""
        assert self._proc is not None
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stats(self) -> dict[str, int]:
        return self._get("/bench/stats")

    def reset(self) -> None:
        self._get("/bench/reset")


if __name__ == "__main__":
    serve(float(sys.argv[1]), float(sys.argv[2]))
