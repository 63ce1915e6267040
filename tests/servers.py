"""A scripted OpenAI-compatible server on loopback, for fault and protocol tests.

Real HTTP over a real socket, so the openai SDK runs unpatched (its retries, timeouts and
Retry-After handling included). Quality tests use a real llama.cpp server instead.

    with ScriptedServer() as server:
        server.add_faults("503", Fault("429", retry_after=1), "hang")
        ...  # point a client at server.base_url
        assert len(server.chat_requests) == 4
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = (
    "401", "429", "500", "502", "503",  # HTTP errors (each may carry Retry-After)
    "hang",  # no answer until the client gives up (its timeout)
    "reset",  # TCP reset without any response
    "close",  # connection closed without any response
    "not_json",  # 200 with a body that is not JSON at all
    "not_completion",  # 200 with JSON that is not a chat completion (`body`, else an error object)
    "bad_schema",  # a chat completion whose content is JSON that breaks the schema
    "length",  # finish_reason "length" with truncated content
    "empty_choices",  # a chat completion with choices == []
)

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
_DEFINED = re.compile(r"\b(?:def|class|func|function|fn|struct|interface)\s+([A-Za-z_][A-Za-z0-9_]*)\b")
_FALLBACK_WORDS = ["module", "function", "value", "result", "request", "handler"]
_FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
# Words of the language, not of the project: a reply about the code names the project's identifiers.
_NOT_CODE = re.compile(r'"""[\s\S]*?(?:"""|$)|\'\'\'[\s\S]*?(?:\'\'\'|$)|#[^\n]*|//[^\n]*|/\*[\s\S]*?\*/|"(?:\\.|[^"\\\n])*"'
                       r"|'(?:\\.|[^'\\\n])*'")
_COMMON = set(dir(builtins)) | {"self", "from", "import", "return", "class", "None", "True", "False", "pass", "raise", "with", "elif",
           "else", "while", "async", "await", "lambda", "yield", "const", "function", "this", "func", "public",
           "private", "static", "void", "package", "struct", "impl"}


@dataclass
class Fault:
    """One scripted misbehaviour, served to the next request in order."""

    kind: str
    retry_after: float | None = None  # seconds, sent as Retry-After on HTTP errors
    body: str | None = None  # replaces the default error or not_json body

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(FAULT_KINDS)}")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, the raw text if not JSON, None if empty
    at: float = field(default_factory=time.monotonic)


Responder = Callable[[dict[str, Any]], "dict[str, Any] | str"]


class ScriptedServer:
    """An OpenAI-compatible `/v1/models` + `/v1/chat/completions` server with a fault script.

    `responder(request_json)` overrides the default reply content: a dict is sent as its JSON,
    a str as is. `reject_json_schema` answers response_format json_schema with HTTP 500 the way
    llama-cpp-python's server does; `reject_json_object_schema` answers json_object + schema
    with a 400 (servers that only take plain json_object).
    """

    def __init__(
        self,
        *,
        models: list[str] | None = None,
        latency: float = 0.0,
        hang_seconds: float = 5.0,
        reject_json_schema: bool = False,
        reject_json_object_schema: bool = False,
        responder: Responder | None = None,
    ) -> None:
        self.models = models or ["scripted-model"]
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.reject_json_schema = reject_json_schema
        self.reject_json_object_schema = reject_json_object_schema
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self.faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> "ScriptedServer":
        handler = type("Handler", (_Handler,), {"scripted": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- script and records -----------------------------------------------------------------

    def add_faults(self, *faults: Fault | str) -> None:
        """Queue faults (a Fault or its kind) for the next requests, in order, whatever the path."""
        with self._lock:
            self.faults.extend(f if isinstance(f, Fault) else Fault(f) for f in faults)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def response_format_types(self) -> list[str]:
        """One label per chat request: json_schema, json_object_schema, json_object or none."""
        labels = []
        for request in self.chat_requests:
            rf = request.body.get("response_format") if isinstance(request.body, dict) else None
            if not rf:
                labels.append("none")
            elif rf.get("type") == "json_object" and "schema" in rf:
                labels.append("json_object_schema")
            else:
                labels.append(str(rf.get("type")))
        return labels

    def _record(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            self.requests.append(request)
            return self.faults.popleft() if self.faults else None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not block stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # scripted resets and hangs make handlers fail on purpose


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedServer
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers: exercises the SDK's pool

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle(None)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw
        self._handle(body)

    def _handle(self, body: Any) -> None:
        server = self.scripted
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = server._record(RecordedRequest(self.command, self.path, headers, body))
        if server.latency:
            time.sleep(server.latency)
        if fault is not None and self._serve_transport_fault(fault):
            return
        path = self.path.split("?")[0].rstrip("/")
        if self.command == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": "scripted"} for m in server.models]
            return self._json(200, {"object": "list", "data": data})
        if self.command == "POST" and path.endswith("/chat/completions") and isinstance(body, dict):
            return self._chat(body, fault)
        self._json(404, {"error": {"message": f"no route {self.command} {self.path}", "type": "not_found"}})

    def _serve_transport_fault(self, fault: Fault) -> bool:
        """Serve faults that are not a chat completion; False for those the chat reply carries."""
        kind = fault.kind
        if kind in ("401", "429", "500", "502", "503"):
            extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            message = fault.body or f"scripted fault {kind}"
            self._json(int(kind), {"error": {"message": message, "type": "scripted", "code": kind}}, extra)
            return True
        if kind == "hang":
            self.scripted._stopping.wait(self.scripted.hang_seconds)
            self.close_connection = True
            return True
        if kind == "reset":
            # SO_LINGER 0 turns close() into a TCP RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return True
        if kind == "close":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return True
        if kind == "not_json":
            self._send(200, (fault.body or "<html>upstream proxy error</html>").encode(), "text/html")
            return True
        if kind == "not_completion":
            self._send(200, (fault.body or '{"object": "error", "message": "overloaded"}').encode(), "application/json")
            return True
        return False

    def _chat(self, request: dict[str, Any], fault: Fault | None) -> None:
        server = self.scripted
        rf = request.get("response_format") or {}
        if server.reject_json_schema and rf.get("type") == "json_schema":
            # What llama-cpp-python's server answers (pydantic validation surfaced as a 500).
            message = (
                "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
            )
            return self._json(500, {"error": {"message": message, "type": "internal_server_error"}})
        if server.reject_json_object_schema and rf.get("type") == "json_object" and "schema" in rf:
            message = "Unrecognized request argument supplied: response_format.schema"
            return self._json(400, {"error": {"message": message, "type": "invalid_request_error"}})

        schema = _schema_of(rf)
        words = _words(request.get("messages") or [])
        finish_reason = "stop"
        if fault is not None and fault.kind == "bad_schema":
            content = json.dumps({"unexpected": 42})
        elif server.responder is not None:
            reply = server.responder(request)
            content = reply if isinstance(reply, str) else json.dumps(reply)
        else:
            content = json.dumps(synthesize(schema, words, seed=_variant(request)) if schema else {})
        if fault is not None and fault.kind == "length":
            content, finish_reason = content[: max(1, len(content) // 2)], "length"
        choices = [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}]
        if fault is not None and fault.kind == "empty_choices":
            choices = []
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages") or [])
        completion_tokens = len(content.split())
        self._json(200, {
            "id": f"chatcmpl-scripted-{server.request_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or server.models[0],
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to do


# -- schema-valid replies -------------------------------------------------------------------


def _schema_of(response_format: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(response_format.get("json_schema"), dict):
        return response_format["json_schema"].get("schema")
    return response_format.get("schema")


def _variant(request: dict[str, Any]) -> int:
    """A small number that differs between requests, so two prompts about the same code (two design
    proposals on one module) get different replies, as they would from a real model."""
    digest = hashlib.sha256(json.dumps(request.get("messages"), sort_keys=True).encode()).digest()
    return digest[0] % 64


def _words(messages: list[dict[str, Any]]) -> list[str]:
    """Identifiers from the code in the last user message (else all of its words), defined and
    code-shaped names first, so replies cite the code they were asked about the way a real model does."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = str(message.get("content", ""))
            code = _NOT_CODE.sub(" ", "\n".join(_FENCED.findall(content)))
            found = [w for w in dict.fromkeys(_WORD.findall(code or content)) if w not in _COMMON]
            defined_names = set(_DEFINED.findall(code))  # one pass: a regex per word cost the bench server 4 ms a request
            defined = [w for w in found if w in defined_names]
            shaped = [w for w in found if "_" in w.strip("_") or any(c.isupper() for c in w[1:])]
            return list(dict.fromkeys(defined + shaped + found)) or _FALLBACK_WORDS
    return _FALLBACK_WORDS


def synthesize(schema: dict[str, Any], words: list[str], root: dict[str, Any] | None = None, seed: int = 0,
               name: str = "") -> Any:
    """A deterministic value valid against `schema` (the subset LLM response schemas use). `name` is the
    property being filled: texts are shaped like a plausible question, trace or answer about `words`."""
    root = root if root is not None else schema
    if "$ref" in schema:
        return synthesize(_resolve(root, schema["$ref"]), words, root, seed, name)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][seed % len(schema["enum"])]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return synthesize(schema[key][0], words, root, seed, name)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: synthesize(sub, words, root, seed + i + 1, key) for i, (key, sub) in enumerate(properties.items())}
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 2)))
        count = max(low, min(2, high))
        items = schema.get("items") or {"type": "string"}
        return [synthesize(items, words, root, seed + i + 1, name) for i in range(count)]
    if kind in ("integer", "number"):
        value = max(int(schema.get("minimum", 1)), min(seed + 1, int(schema.get("maximum", seed + 1))))
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    return _text(schema, words, seed, name)


# Templates per field, varied by seed so the pairs of one reply are not near-duplicates of each other.
_TEMPLATES = {
    "question": ["What does `{0}` do with `{1}` when `{2}` is involved?", "How is `{1}` kept consistent when `{0}` runs?",
                 "Which role does `{2}` play for `{0}` and `{1}`?", "When does `{0}` depend on `{2}` rather than `{1}`?"],
    "thinking_trace": ["First, {0} is where the work starts. Then {1} is combined with {2}. "
                       "Finally the outcome of {0} reaches the caller.",
                       "Look at {1} first. It feeds {0}, which then relies on {2}. "
                       "So the behaviour follows from how {1} and {2} meet."],
    "answer": ["`{0}` relies on `{1}` and `{2}` to produce its result.", "It is `{1}` that drives `{0}`, with `{2}` as input.",
               "`{2}` shapes the result of `{0}`, while `{1}` keeps the state.", "Through `{0}`, the values of `{1}` reach `{2}`."],
    "": ["Extend {0} so that {1} can work together with {2}.", "Record how {1} changes whenever {0} handles {2}.",
         "Keep {2} and {1} in step for every call of {0}."],
}


def _text(schema: dict[str, Any], words: list[str], seed: int, name: str = "") -> str:
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", max(low, 160)))
    templates = _TEMPLATES.get(name, _TEMPLATES[""])
    pool = words[:8]  # the best names: defined and code-shaped ones come first
    picked = [pool[(seed * 2 + i) % len(pool)] for i in range(4)]
    text = templates[seed % len(templates)].format(*picked)
    step = 0
    while len(text) < low:
        step += 1
        text += f" It also keeps {pool[(seed + step) % len(pool)]} in mind."
    return text[:high]


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node
