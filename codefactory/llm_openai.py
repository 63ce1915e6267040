"""OpenAI-compatible endpoints (OpenAI, vLLM, llama.cpp servers, Ollama, LM Studio...).

The only module that imports `openai`. Retries, exponential backoff with jitter and Retry-After
are the SDK's own; this module only picks the structured-output mode the server accepts and turns
SDK failures into one-line GenerationError/BackendError reasons that never contain the API key.
"""

from __future__ import annotations

import json
import logging
import random
import re
import ssl
import threading
import time
from typing import Any

import openai

from . import tokens
from .errors import BackendError, GenerationError
from .llm import Completion, GenerationParams, LLMSettings, Usage, grammar_safe_schema

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local servers ignore the key, but the SDK refuses to start without one.
_PLACEHOLDER_KEY = "not-needed"
_CHECK_TIMEOUT = 10.0
# The SDK's own first backoff and Retry-After ceiling (openai._constants), for the probe's retry.
_FIRST_BACKOFF = 0.5
_MAX_RETRY_AFTER = 120.0

# Structured-output modes, strongest first: what "auto" tries in order.
MODES = ("json_schema", "json_object_schema", "json_object")
# A 5xx only counts as "this server rejects the response_format" when its message says so;
# otherwise it is an ordinary server failure and gets the SDK's retries.
_FORMAT_HINTS = ("response_format", "json_schema")
_SECRET_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")


def _plain_http_client(base_url: str, timeout: float) -> Any:
    """For an http:// endpoint (a local server), a client that does not load the CA bundle, else None (the
    SDK's default). Loading it is 0.05 s of every run, a twentieth of a one-file pre-push run, for TLS that a
    plain-http endpoint never uses; should the server redirect to https, the connection fails closed, since
    a context that trusts no certificate authority accepts no certificate."""
    if not base_url.lower().startswith("http://"):
        return None
    trusts_none = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificates and host names checked, no CA loaded
    return openai.DefaultHttpxClient(timeout=timeout, verify=trusts_none)


def response_format_for(mode: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The `response_format` request field for one structured-output mode."""
    if mode == "json_schema":
        # strict=False: strict mode rejects common schemas (optional fields, minLength...).
        return {"type": "json_schema", "json_schema": {"name": "record", "schema": schema, "strict": False}}
    if mode == "json_object_schema":
        # llama.cpp's python server (and some others) constrain json_object by this extra field;
        # it turns the schema into a grammar that long string bounds would crash.
        return {"type": "json_object", "schema": grammar_safe_schema(schema)}
    return {"type": "json_object"}


class OpenAIBackend:
    """An OpenAI-compatible chat-completions endpoint; one client shared by all worker threads."""

    backend = "openai"
    max_concurrency: int | None = None

    def __init__(self, settings: LLMSettings) -> None:
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        if not settings.api_key and not settings.base_url:
            raise BackendError(
                "the openai backend needs an endpoint: set OPENAI_API_KEY, or --base-url for an OpenAI-compatible server"
            )
        self._api_key = settings.api_key or _PLACEHOLDER_KEY
        self._max_retries = settings.max_retries
        self._timeout = settings.timeout
        # Without a base URL it's OpenAI itself; with one and no model, check() asks the server.
        self.model: str = settings.model or ("" if settings.base_url else DEFAULT_MODEL)
        self._client = openai.OpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            http_client=_plain_http_client(self.base_url, settings.timeout),
        )
        # Copies share the underlying connection pool; they only change retry/timeout options.
        self._probe_client = self._client.with_options(max_retries=0)
        self._check_client = self._client.with_options(max_retries=1, timeout=min(_CHECK_TIMEOUT, settings.timeout))
        self._mode: str | None = None if settings.response_format == "auto" else settings.response_format
        self._probe_lock = threading.Lock()
        self._model_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, mode={self._mode!r})"

    @property
    def response_mode(self) -> str | None:
        """The structured-output mode in use, None until the first request has found it."""
        return self._mode

    def check(self) -> None:
        """GET /models: the endpoint answers, the key is accepted and the model is offered."""
        try:
            listed: list[str] | None = [m.id for m in self._check_client.models.list().data]
        except openai.AuthenticationError:
            raise BackendError(
                f"the LLM endpoint at {self.base_url} rejected the API key (401): check OPENAI_API_KEY"
            ) from None
        except openai.NotFoundError:
            listed = None  # some servers have no /models; the first request will tell
        except (openai.APIResponseValidationError, AttributeError, TypeError, ValueError):
            listed = None  # a /models body we cannot read says nothing about chat completions
        except openai.APIConnectionError as exc:
            raise BackendError(f"cannot reach the LLM endpoint at {self.base_url}: {self._cause(exc)}") from None
        except openai.APIStatusError as exc:
            raise BackendError(
                f"the LLM endpoint at {self.base_url} answered {exc.status_code} to GET /models: {self._short(exc)}"
            ) from None
        with self._model_lock:
            if not self.model:
                if not listed:
                    raise BackendError(f"the LLM endpoint at {self.base_url} lists no models: name one with --model")
                self.model = listed[0]
            elif listed and self.model not in listed:
                # Only a warning: llama.cpp and others serve one model under any name.
                offered = ", ".join(listed[:8]) + (" ..." if len(listed) > 8 else "")
                log.warning("model %r is not listed by %s (it lists: %s)", self.model, self.base_url, offered)

    def complete(self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams) -> Completion:
        """One chat completion constrained to `schema`; GenerationError when it failed for good."""
        if not self.model:
            self.check()
        mode = self._mode
        if mode is None:
            # Only the first request pays for finding the mode; the others wait for its answer.
            with self._probe_lock:
                if self._mode is None:
                    return self._finish(self._probe(messages, schema, params))
                mode = self._mode
        try:
            response = self._create(self._client, mode, messages, schema, params)
        except openai.APIError as exc:
            raise GenerationError(self._reason(exc)) from None
        return self._finish(response)

    def count_tokens(self, text: str) -> int:
        """A provider-neutral estimate (o200k); the server's tokenizer is not reachable."""
        return tokens.count_tokens(text)

    def close(self) -> None:
        self._client.close()

    # -- internals ---------------------------------------------------------------------------

    def _create(
        self,
        client: openai.OpenAI,
        mode: str,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
    ) -> Any:
        # A plain dict, not the SDK's TypedDicts: `messages` are untyped role/content dicts and the
        # json_object_schema mode sends a `schema` field that the SDK's ResponseFormat types do not have.
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "response_format": response_format_for(mode, schema),
        }
        if params.seed is not None:
            request["seed"] = params.seed
        try:
            # The SDK's generic POST (its retries, timeouts and error types included) with the reply as plain
            # JSON: `chat.completions.create` walks the request through its TypedDicts and builds pydantic
            # models of the reply, half of all the CPU a request costs (bench/README.md).
            return client.post("/chat/completions", body=request, cast_to=object)
        except json.JSONDecodeError:
            # A body labelled JSON that isn't: the SDK does not retry it, and neither do we.
            raise GenerationError("malformed response (body is not JSON)", retryable=True) from None

    def _probe(self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams) -> Any:
        """Send the request in the strongest mode the server accepts and remember that mode.

        Probes go out without retries so that a server rejecting a mode (llama.cpp answers 500)
        does not spend the retry budget with backoff; an ordinary failure is retried by the SDK.
        """
        rejected: openai.APIStatusError | None = None
        for mode in MODES:
            try:
                response = self._create(self._probe_client, mode, messages, schema, params)
            except openai.APIStatusError as exc:
                if _rejects_response_format(exc):
                    log.info("%s rejects response_format mode %s (%s); trying the next one", self.base_url, mode,
                             exc.status_code)
                    rejected = rejected or exc
                    continue
                response = self._retry(mode, messages, schema, params, exc)
            except openai.APIError as exc:  # timeouts and connection errors
                response = self._retry(mode, messages, schema, params, exc)
            self._mode = mode
            if mode != MODES[0]:
                log.warning("%s: structured output falls back to response_format mode %s", self.base_url, mode)
            return response
        assert rejected is not None
        # Every mode refused: most likely the request itself is at fault (e.g. too long); say what it was.
        raise GenerationError(f"{self._reason(rejected)} (with each response_format: {', '.join(MODES)})")

    def _retry(
        self,
        mode: str,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        params: GenerationParams,
        first: openai.APIError,
    ) -> Any:
        retryable = not isinstance(first, openai.APIStatusError) or first.status_code in (408, 409, 429) or (
            first.status_code >= 500
        )
        delay = _first_retry_delay(first)
        if not retryable or self._max_retries == 0 or delay is None:
            raise GenerationError(self._reason(first)) from None
        # The probe ran without the SDK's retry loop, so its first wait (Retry-After included) is ours.
        time.sleep(delay)
        # The probe was the first attempt: keep the total at 1 + max_retries like any other request.
        client = self._client.with_options(max_retries=self._max_retries - 1)
        try:
            return self._create(client, mode, messages, schema, params)
        except openai.APIError as exc:
            raise GenerationError(self._reason(exc)) from None

    def _finish(self, response: Any) -> Completion:
        """The completion in a chat-completion body, as JSON; GenerationError for any other body."""
        choices = response.get("choices") if isinstance(response, dict) else None
        if not isinstance(choices, list):
            # The SDK hands back the raw text when the body is not JSON.
            raise GenerationError("malformed response (not a chat completion)", retryable=True)
        if not choices:
            raise GenerationError("empty choices", retryable=True)
        choice = choices[0] if isinstance(choices[0], dict) else {}
        finish_reason = choice.get("finish_reason") or "stop"
        if finish_reason == "length":
            raise GenerationError("finish_reason=length (reply truncated)", retryable=True)
        if finish_reason == "content_filter":
            raise GenerationError("finish_reason=content_filter (reply withheld)")
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not text or not isinstance(text, str):
            raise GenerationError("empty reply", retryable=True)
        usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        model = response.get("model")
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=_count(usage.get("prompt_tokens")),
                        completion_tokens=_count(usage.get("completion_tokens"))),
            model=model if isinstance(model, str) and model else self.model,
            finish_reason=str(finish_reason),
        )

    def _reason(self, exc: openai.APIError) -> str:
        n = self._max_retries
        if isinstance(exc, openai.APITimeoutError):
            return f"timeout after {n} retries ({self._timeout:g} s each)"
        if isinstance(exc, openai.APIConnectionError):
            return f"connection error after {n} retries: {self._cause(exc)}"
        if isinstance(exc, openai.RateLimitError):
            return f"rate limited (429) after {n} retries"
        if isinstance(exc, openai.AuthenticationError):
            return "authentication failed (401): check OPENAI_API_KEY"
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code >= 500:
                return f"server error {exc.status_code} after {n} retries: {self._short(exc)}"
            return f"request rejected ({exc.status_code}): {self._short(exc)}"
        return f"malformed response: {self._scrub(str(exc))[:200]}"

    def _cause(self, exc: openai.APIError) -> str:
        cause = exc.__cause__
        text = str(cause) if cause is not None and str(cause) else exc.message
        return self._scrub(text)[:200]

    def _short(self, exc: openai.APIError) -> str:
        body = exc.body
        message: object = exc.message
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message", inner) if isinstance(inner, dict) else inner
        text = " ".join(str(message).split())
        return self._scrub(text)[:200]

    def _scrub(self, text: str) -> str:
        # Servers echo keys back ("Incorrect API key provided: sk-..."); never pass them on.
        if self._api_key and self._api_key != _PLACEHOLDER_KEY:
            text = text.replace(self._api_key, "***")
        return _SECRET_LIKE.sub("***", text)


def _count(value: object) -> int:
    """A token count from a reply's usage; servers that leave it out or send nonsense count 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _first_retry_delay(exc: openai.APIError) -> float | None:
    """The SDK's wait before a first retry: Retry-After(-ms) up to 2 minutes, else ~0.5 s with jitter.

    None when the server asks for more than the SDK would ever wait (it gives up then, too).
    """
    if isinstance(exc, openai.APIStatusError):
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                value = float(exc.response.headers.get(name, "")) * scale
            except ValueError:
                continue
            if value > _MAX_RETRY_AFTER:
                return None
            if value > 0:
                return value
    return _FIRST_BACKOFF * (1 - 0.25 * random.random())


def _rejects_response_format(exc: openai.APIStatusError) -> bool:
    if exc.status_code in (400, 422):
        return True
    if exc.status_code >= 500:
        text = f"{exc.message} {exc.body}".lower()
        return any(hint in text for hint in _FORMAT_HINTS)
    return False
