"""Runs generation requests: cache first, then the LLM with bounded concurrency.

Every reply is parsed and validated against the request's JSON schema; an invalid reply is
re-asked once with the validation error, a bad one (not JSON, no choices, cut off) asked once
more, then recorded as a failure while the run goes on.
A reply is stored in the cache before its callback runs, so a crash never loses paid work, and it is
redacted first: a secret a model emits reaches neither the cache nor the dataset.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from codefactory.cache import ReplyCache
from codefactory.errors import GenerationError
from codefactory.llm import LLM, GenerationParams, Usage
from codefactory.secrets import redact_all


@dataclass(frozen=True)
class Request:
    key: str  # cache key (SPEC §4)
    scene: str
    label: str  # what a failure is reported as, e.g. the chunk id
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    params: GenerationParams


@dataclass(frozen=True)
class Reply:
    data: dict[str, Any]
    usage: Usage
    model: str
    created_at: str
    cached: bool
    secrets: dict[str, int] = field(default_factory=dict)  # redacted from this reply, by kind


@dataclass
class GenerationStats:
    requests: int = 0
    cache_hits: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    deferred: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


ReplyHandler = Callable[[Request, Reply], None]
# Before asking again after a bad reply (not JSON, no choices, cut off); transport faults (429, 5xx,
# timeouts, resets) have the backend's own retries with backoff.
BAD_REPLY_BACKOFF = 0.5


def generate(
    requests: Sequence[Request],
    *,
    llm: LLM | None,
    cache: ReplyCache,
    on_reply: ReplyHandler,
    concurrency: int = 8,
    max_requests: int | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> GenerationStats:
    """Answer every request from the cache or the LLM; `on_reply` runs in the calling thread."""
    stats = GenerationStats(requests=len(requests))
    pending: list[Request] = []
    seen: set[str] = set()
    for request in requests:
        if request.key in seen:  # identical inputs share one reply
            advance(1)
            continue
        seen.add(request.key)
        hit = cache.get(request.key)
        if hit is None:
            pending.append(request)
            continue
        stats.cache_hits += 1
        on_reply(request, _reply_from_cache(hit))
        advance(1)

    if max_requests is not None and len(pending) > max_requests:
        stats.deferred = len(pending) - max_requests
        advance(stats.deferred)
        pending = pending[:max_requests]
    if not pending:
        return stats
    if llm is None:
        raise ValueError("generate() needs an LLM for requests that miss the cache")

    workers = max(1, min(concurrency, llm.max_concurrency or concurrency, len(pending)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codefactory-llm") as pool:
        futures: dict[Future[Reply], Request] = {}
        queue = iter(pending)
        try:
            # Keep at most `workers` requests in flight so Ctrl-C cancels promptly.
            for request in queue:
                futures[pool.submit(_ask, llm, cache, request)] = request
                if len(futures) >= workers:
                    break
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    request = futures.pop(future)
                    _collect(future, request, stats, on_reply)
                    advance(1)
                    nxt = next(queue, None)
                    if nxt is not None:
                        futures[pool.submit(_ask, llm, cache, nxt)] = nxt
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return stats


def _collect(future: Future[Reply], request: Request, stats: GenerationStats, on_reply: ReplyHandler) -> None:
    try:
        reply = future.result()
    except GenerationError as exc:
        stats.llm_calls += 1
        stats.failures.append((request.label, exc.reason))
        return
    stats.llm_calls += 1
    stats.prompt_tokens += reply.usage.prompt_tokens
    stats.completion_tokens += reply.usage.completion_tokens
    on_reply(request, reply)


def _ask(llm: LLM, cache: ReplyCache, request: Request) -> Reply:
    messages = list(request.messages)
    usage = Usage()
    for attempt in (1, 2):
        try:
            completion = llm.complete(messages, request.schema, request.params)
        except GenerationError as exc:
            if not exc.retryable:
                raise
            if attempt == 2:
                raise GenerationError(f"{exc.reason}, also when asked again") from None
            time.sleep(BAD_REPLY_BACKOFF)  # a proxy's error page or a hiccup: the same request, once more
            continue
        usage = Usage(
            usage.prompt_tokens + completion.usage.prompt_tokens,
            usage.completion_tokens + completion.usage.completion_tokens,
        )
        try:
            data = parse_reply(completion.text, request.schema, completion.finish_reason)
        except ValueError as exc:
            if attempt == 2:
                raise GenerationError(f"invalid reply after one re-ask: {exc}") from None
            messages = messages + [
                {"role": "assistant", "content": completion.text[:4000]},
                {"role": "user", "content": f"That reply was not valid: {exc}. Reply again with only a JSON object that matches the schema."},
            ]
            continue
        data, secrets = redact_all(data)
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        reply = {"data": data, "model": completion.model, "created_at": created_at,
                 "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}}
        cache.put(request.key, reply)
        return Reply(data=data, usage=usage, model=completion.model, created_at=created_at, cached=False,
                     secrets=dict(secrets))
    raise AssertionError("unreachable")


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_reply(text: str, schema: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    """The reply as a schema-valid object, or ValueError saying what is wrong."""
    if finish_reason == "length":
        raise ValueError("the reply was cut off at the token limit (finish_reason=length)")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        # strict=False takes raw newlines and tabs inside strings: llama.cpp servers' schema grammars
        # let small models write them, and the text is still what the model meant.
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the reply is not a JSON object")
    import jsonschema  # here: commands that send no request (chunk, skeleton, scan) skip its import (~40 ms)

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the object"
        raise ValueError(f"schema violation at {where}: {error.message[:200]}")
    return data


def _reply_from_cache(hit: dict[str, Any]) -> Reply:
    usage = hit.get("usage", {})
    return Reply(
        data=hit["data"],
        usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
        model=hit.get("model", ""),
        created_at=hit.get("created_at", ""),
        cached=True,
    )
