"""Scene-2: architectural design proposals anchored on a slice of the project skeleton.

Each proposal is anchored on a few central modules from different directories. Its cache key
covers the skeleton slice of those modules (their public surface), not function bodies, so a
body-only change keeps the proposal while a signature change regenerates it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

from codefactory.cache import cache_key
from codefactory.generate import Reply, Request
from codefactory.llm import GenerationParams
from codefactory.models import Chunk, Sample
from codefactory.prompts import code_fence, load_prompt
from codefactory.scene1 import sample_id
from codefactory.skeleton import Skeleton

SCENE: Final = "scene2"  # Final: typed as the literal that Sample.scene takes
MODULES_PER_PROPOSAL = 3
SNIPPET_LINES = 40

THEMES = (
    "a new user-facing capability",
    "an integration with an external system or service",
    "auditing, observability and operational insight",
    "performance and scale for much larger inputs",
    "configuration, extensibility or plugins",
    "data import, export or migration",
    "access control, multi-tenancy or safety limits",
    "a background, batch or scheduled workflow",
)


def _strings(max_length: int, min_items: int = 1, max_items: int = 6) -> dict:
    return {"type": "array", "minItems": min_items, "maxItems": max_items,
            "items": {"type": "string", "minLength": 10, "maxLength": max_length}}


SCHEMA: dict = {
    "type": "object",
    "properties": {
        "requirement": {"type": "string", "minLength": 40, "maxLength": 700},
        "thinking_trace": {"type": "string", "minLength": 100, "maxLength": 2500},
        "proposal": {
            "type": "object",
            "properties": {
                "summary": {"type": "string", "minLength": 30, "maxLength": 600},
                "api_changes": _strings(300),
                "domain_model": _strings(300),
                "data_storage": _strings(300),
                "workflow": _strings(300, 2, 8),
                "risks": _strings(300),
            },
            "required": ["summary", "api_changes", "domain_model", "data_storage", "workflow", "risks"],
            "additionalProperties": False,
        },
    },
    "required": ["requirement", "thinking_trace", "proposal"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Anchor:
    index: int
    modules: tuple[str, ...]
    theme: str


@dataclass(frozen=True)
class Scene2Job:
    anchor: Anchor
    skeleton_slice: str
    snippet_ids: tuple[str, ...]
    request: Request


def choose_anchors(skeleton: Skeleton, count: int, *, seed: int = 0) -> list[Anchor]:
    """Proposal i's anchor depends only on i, the seed and the skeleton, never on `count`,
    so asking for more proposals later keeps the first ones (and their cache entries)."""
    candidates = [f for f in skeleton.files if f.symbols]
    # Tests and prose describe the project but are poor places to design a feature from.
    product = [f.path for f in candidates if not _is_test_path(f.path) and f.language != "text"]
    modules = sorted(product or [f.path for f in candidates], key=lambda p: (-skeleton.centrality.get(p, 0.0), p))
    if not modules:
        return []
    by_dir: dict[str, list[str]] = {}
    for path in modules:
        by_dir.setdefault(str(PurePosixPath(path).parent), []).append(path)
    # Interleave directories by their best module, so consecutive picks come from different places.
    pool: list[str] = []
    queues = sorted(by_dir.values(), key=lambda paths: (-skeleton.centrality.get(paths[0], 0.0), paths[0]))
    while any(queues):
        for queue in queues:
            if queue:
                pool.append(queue.pop(0))
    head = pool[: max(MODULES_PER_PROPOSAL * 4, 8)]  # central modules make the best anchors
    anchors = []
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        first = head[index % len(head)]
        others = [m for m in head if m != first]
        picked = [first] + rng.sample(others, min(MODULES_PER_PROPOSAL - 1, len(others)))
        anchors.append(Anchor(index, tuple(sorted(picked)), THEMES[(index + seed) % len(THEMES)]))
    return anchors


def _is_test_path(path: str) -> bool:
    parts = PurePosixPath(path).parts
    name = parts[-1]
    return (any(p in ("test", "tests", "testing", "__tests__", "spec") for p in parts[:-1])
            or name.startswith("test_") or name.endswith(("_test.py", "_test.go", ".test.js", ".test.ts", ".spec.ts",
                                                          ".spec.js", "Test.java", "Tests.java", "conftest.py")))


def pick_snippets(anchor: Anchor, ranked_chunks: Sequence[Chunk], limit: int) -> list[Chunk]:
    """The most informative chunk of each anchor module, then the next ones, up to `limit`."""
    per_module: dict[str, list[Chunk]] = {m: [] for m in anchor.modules}
    for chunk in ranked_chunks:
        if chunk.path in per_module and chunk.kind != "window":
            per_module[chunk.path].append(chunk)
    picked: list[Chunk] = []
    depth = 0
    while len(picked) < limit and any(len(v) > depth for v in per_module.values()):
        for module in anchor.modules:
            if depth < len(per_module[module]) and len(picked) < limit:
                picked.append(per_module[module][depth])
        depth += 1
    return picked


def plan_scene2(
    skeleton: Skeleton,
    ranked_chunks: Sequence[Chunk],
    *,
    repo_name: str,
    count: int,
    snippets_per_proposal: int,
    model: str,
    params: GenerationParams,
    seed: int = 0,
    code_of: Mapping[str, str] | None = None,
    anchors: Sequence[Anchor] | None = None,
) -> list[Scene2Job]:
    """Jobs for `count` proposals, or for exactly `anchors` (an incremental run re-asks for given slots)."""
    prompt = load_prompt(SCENE)
    overview = skeleton.tree
    jobs = []
    for anchor in choose_anchors(skeleton, count, seed=seed) if anchors is None else anchors:
        skeleton_slice = skeleton.slice(anchor.modules)
        snippets = pick_snippets(anchor, ranked_chunks, snippets_per_proposal)
        snippet_text = "\n\n".join(_snippet(c, (code_of or {}).get(c.id, c.text)) for c in snippets)
        key = cache_key(scene=SCENE, prompt_version=prompt.version, model=model, params=params.as_dict(),
                        input={"skeleton_slice": skeleton_slice, "modules": list(anchor.modules),
                               "index": anchor.index, "theme": anchor.theme})
        messages = prompt.messages(repo=repo_name, modules=", ".join(anchor.modules),
                                   skeleton=f"{overview}\n\n{skeleton_slice}", snippets=snippet_text,
                                   index=anchor.index + 1, theme=anchor.theme)
        request = Request(key=key, scene=SCENE, label=f"proposal #{anchor.index + 1}", messages=messages, schema=SCHEMA,
                          params=params)
        jobs.append(Scene2Job(anchor, skeleton_slice, tuple(c.id for c in snippets), request))
    return jobs


def slice_sha256(skeleton_slice: str) -> str:
    return hashlib.sha256(skeleton_slice.encode("utf-8")).hexdigest()


def sample_from_reply(job: Scene2Job, reply: Reply, *, repo_name: str, commit: str, backend: str,
                      params: GenerationParams) -> Sample:
    data = reply.data
    proposal = {k: (v.strip() if isinstance(v, str) else [str(i).strip() for i in v])
                for k, v in data["proposal"].items()}
    source = {"repo": repo_name, "commit": commit, "modules": list(job.anchor.modules),
              "skeleton_sha256": slice_sha256(job.skeleton_slice), "snippet_chunk_ids": list(job.snippet_ids)}
    generation = {"backend": backend, "model": reply.model, "prompt_version": load_prompt(SCENE).version,
                  "params": params.as_dict(),
                  "usage": {"prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": reply.usage.completion_tokens},
                  "cache_key": job.request.key, "created_at": reply.created_at}
    content = {"requirement": data["requirement"].strip(), "thinking_trace": data["thinking_trace"].strip(),
               "proposal": proposal}
    return Sample(id=sample_id("s2", job.request.key, 0), scene=SCENE, content=content, source=source,
                  generation=generation, input={"theme": job.anchor.theme, "index": job.anchor.index})


def _snippet(chunk: Chunk, code: str) -> str:
    lines = code.splitlines()
    if len(lines) > SNIPPET_LINES:
        lines = lines[:SNIPPET_LINES] + ["    ..."]
    body = "\n".join(lines)
    fence = code_fence(body)
    return f"{chunk.path} lines {chunk.start_line}-{chunk.end_line} ({chunk.symbol or 'module'}):\n{fence}{chunk.language}\n{body}\n{fence}"
