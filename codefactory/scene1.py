"""Scene-1: business-logic question / thinking trace / answer triplets, one request per chunk."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from codefactory.cache import cache_key
from codefactory.generate import Reply, Request
from codefactory.llm import GenerationParams
from codefactory.models import Chunk, Sample
from codefactory.prompts import code_fence, load_prompt

SCENE: Final = "scene1"  # Final: typed as the literal that Sample.scene takes

# How much a kind of chunk tends to teach: definitions carry behaviour, windows of prose less.
_KIND_WEIGHT = {"method": 1.0, "function": 1.0, "class": 0.95, "module": 0.6, "window": 0.35}


def scene1_schema(count: int) -> dict:
    """Every string is bounded: small models otherwise repeat themselves until max_tokens."""
    pair = {
        "type": "object",
        "properties": {
            "question": {"type": "string", "minLength": 15, "maxLength": 300},
            "thinking_trace": {"type": "string", "minLength": 60, "maxLength": 1500},
            "answer": {"type": "string", "minLength": 20, "maxLength": 900},
        },
        "required": ["question", "thinking_trace", "answer"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"pairs": {"type": "array", "items": pair, "minItems": count, "maxItems": count}},
        "required": ["pairs"],
        "additionalProperties": False,
    }


def rank_chunks(chunks: Sequence[Chunk], centrality: Mapping[str, float] | None = None) -> list[Chunk]:
    """Most informative first, deterministically: definitions over windows, central files first,
    mid-sized chunks over one-liners; ties broken by id."""
    centrality = centrality or {}

    def score(chunk: Chunk) -> float:
        weight = _KIND_WEIGHT.get(chunk.kind, 0.5) * (0.4 if chunk.language == "text" else 1.0)
        size = math.log1p(min(chunk.tokens, 600))
        return weight * size * (1.0 + centrality.get(chunk.path, 0.0))

    return sorted(chunks, key=lambda c: (-round(score(c), 9), c.id))


@dataclass(frozen=True)
class Scene1Job:
    chunk: Chunk
    code: str  # the text sent to the LLM: the chunk with secrets redacted
    request: Request


def plan_scene1(
    chunks: Sequence[Chunk],
    *,
    repo_name: str,
    qa_count: int,
    model: str,
    params: GenerationParams,
    code_of: Mapping[str, str] | None = None,
) -> list[Scene1Job]:
    """One request per chunk. `code_of` maps chunk id to the (redacted) text sent instead of chunk.text."""
    prompt = load_prompt(SCENE)
    schema = scene1_schema(qa_count)
    jobs = []
    for chunk in chunks:
        code = (code_of or {}).get(chunk.id, chunk.text)
        # The path is left out of the key on purpose: a renamed but unchanged chunk keeps its samples.
        key = cache_key(scene=SCENE, prompt_version=prompt.version, model=model, params=params.as_dict(),
                        input={"language": chunk.language, "code": code, "count": qa_count})
        messages = prompt.messages(repo=repo_name, path=chunk.path, language=chunk.language,
                                   symbol=chunk.symbol or "(module level)", code=code, fence=code_fence(code),
                                   count=qa_count)
        jobs.append(Scene1Job(chunk, code, Request(key=key, scene=SCENE, label=chunk.id, messages=messages, schema=schema, params=params)))
    return jobs


def samples_from_reply(
    job: Scene1Job, reply: Reply, *, repo_name: str, commit: str, backend: str, params: GenerationParams
) -> list[Sample]:
    chunk = job.chunk
    pairs = reply.data["pairs"]
    source = {
        "repo": repo_name, "commit": commit, "path": chunk.path, "symbol": chunk.symbol,
        "start_line": chunk.start_line, "end_line": chunk.end_line, "language": chunk.language,
        "chunk_id": chunk.id, "chunk_sha256": chunk.sha256,
    }
    samples = []
    for index, pair in enumerate(pairs):
        generation = {
            "backend": backend, "model": reply.model, "prompt_version": load_prompt(SCENE).version,
            "params": params.as_dict(),
            # One request yields all pairs; its usage is shared out so totals still add up.
            "usage": {"prompt_tokens": reply.usage.prompt_tokens // len(pairs),
                      "completion_tokens": reply.usage.completion_tokens // len(pairs)},
            "cache_key": job.request.key, "created_at": reply.created_at,
        }
        content = {k: pair[k].strip() for k in ("question", "thinking_trace", "answer")}
        samples.append(Sample(id=sample_id("s1", job.request.key, index), scene=SCENE,
                              content=content, source=dict(source), generation=generation,
                              input={"code": job.code}))
    return samples


def sample_id(prefix: str, key: str, index: int) -> str:
    return f"{prefix}-" + hashlib.sha256(f"{key}:{index}".encode()).hexdigest()[:16]
