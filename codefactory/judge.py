"""The optional LLM judge (`--judge`): rubric scores for live samples, cached like generation.

Scores are written into the raw log: the judged sample's record is appended again with
`quality.judge` filled in (the log stays append-only; the latest record of an id is the one read).
The SFT files therefore depend on the raw logs alone, never on the cache, and a judged sample
stays judged whatever later runs are configured with. Requests go through `generate()`, so the
cache, concurrency, the one re-ask on an invalid reply and failure recording are the generation's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from codefactory.cache import ReplyCache, cache_key
from codefactory.fileio import append_jsonl
from codefactory.generate import Reply, Request, generate
from codefactory.grounding import RepoIndex
from codefactory.llm import LLM, GenerationParams
from codefactory.models import Sample
from codefactory.prompts import code_fence, load_prompt
from codefactory.quality import QualitySettings, assess, repo_index
from codefactory.sft import render_proposal
from codefactory.store import DatasetStore
from codefactory.ui import progress_bar

if TYPE_CHECKING:
    from codefactory.snapshot import Workspace

PROMPT = "judge"
CRITERIA = ("accuracy", "usefulness", "clarity")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # The rationale comes first so the model reasons before it scores.
        "rationale": {"type": "string", "minLength": 10, "maxLength": 600},
        **{name: {"type": "integer", "minimum": 1, "maximum": 5} for name in CRITERIA},
    },
    "required": ["rationale", *CRITERIA],
    "additionalProperties": False,
}
# Reasons a sample is not worth judging: it is out whatever the judge says.
_JUDGE_ANYWAY = {None, "duplicate", "near_duplicate", "judge_below_threshold"}


@dataclass
class JudgeReport:
    requests: int = 0
    cache_hits: int = 0
    llm_calls: int = 0
    judged: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def judge_params(seed: int | None) -> GenerationParams:
    # Greedy and short: a judge should give the same scores for the same sample.
    return GenerationParams(temperature=0.0, top_p=1.0, max_tokens=512, seed=seed)


def judge_live(ws: "Workspace", store: DatasetStore, commit: str) -> JudgeReport:
    """Judge every live sample that passed validation and grounding and lacks scores from this judge."""
    report = JudgeReport()
    samples = [s for s, _ in store.live_samples()]
    if not samples:
        return report
    index = repo_index(ws, commit)
    verdicts = assess(samples, index, QualitySettings.from_config(ws.config)).verdicts
    candidates = [s for s in samples if verdicts[s.id].dropped in _JUDGE_ANYWAY]
    backend, model = ws.backend_and_model
    model = ws.config["judge.model"] or model
    llm: LLM | None = None
    if model is None:  # an endpoint whose default model answers: ask it which one before keying
        llm = ws.open_llm()
        model = llm.model
    params = judge_params(ws.config["seed"])
    requests: dict[str, Request] = {}
    by_key: dict[str, list[Sample]] = {}
    for sample in candidates:
        request = judge_request(sample, index, repo=ws.repo.name, model=model, params=params)
        if (sample.quality.get("judge") or {}).get("cache_key") == request.key:
            continue  # already judged by this judge and rubric
        requests[request.key] = request
        by_key.setdefault(request.key, []).append(sample)
    report.requests = len(requests)
    if not requests:
        if llm is not None:
            llm.close()
        return report
    raw = {scene: store.read_raw(scene) for scene in {s.scene for s in candidates}}

    def on_reply(request: Request, reply: Reply) -> None:
        scores = {name: int(reply.data[name]) for name in CRITERIA}
        judgement = {**scores, "score": round(sum(scores.values()) / len(scores), 2),
                     "rationale": str(reply.data["rationale"]).strip(), "model": reply.model,
                     "prompt_version": load_prompt(PROMPT).version, "cache_key": request.key,
                     "created_at": reply.created_at}
        for sample in by_key[request.key]:
            original = raw[sample.scene][sample.id]  # as logged: provenance moves stay in the changelog
            original.quality = {**original.quality, "judge": judgement}
            append_jsonl(store.raw_path(sample.scene), [original.to_record()])
            report.judged += 1

    cache = ReplyCache(ws.cache_dir)
    try:
        if llm is None and any(key not in cache for key in requests):
            llm = ws.open_llm(model=model)
        with progress_bar("judge: scoring", len(requests), enabled=ws.progress) as advance:
            stats = generate(list(requests.values()), llm=llm, cache=cache, on_reply=on_reply,
                             concurrency=ws.config["concurrency"], max_requests=ws.config["max_requests"],
                             advance=advance)
    finally:
        cache.close()
        if llm is not None:
            llm.close()
    report.cache_hits, report.llm_calls, report.failures = stats.cache_hits, stats.llm_calls, stats.failures
    return report


def judge_request(sample: Sample, index: RepoIndex, *, repo: str, model: str, params: GenerationParams) -> Request:
    prompt = load_prompt(PROMPT)
    context, text = render_for_judge(sample, index)
    kind = "business-logic Q&A" if sample.scene == "scene1" else "architectural design proposal"
    key = cache_key(scene=PROMPT, prompt_version=prompt.version, model=model, params=params.as_dict(),
                    input={"context": context, "sample": text})
    messages = prompt.messages(repo=repo, context=context, kind=kind, sample=text)
    return Request(key=key, scene=PROMPT, label=f"judge {sample.id}", messages=messages, schema=SCHEMA, params=params)


def render_for_judge(sample: Sample, index: RepoIndex) -> tuple[str, str]:
    """(the code or project context the sample was written from, the sample itself)."""
    content = sample.content
    if sample.scene == "scene1":
        src = sample.source
        language = src.get("language", "")
        code = sample.input.get("code", "")
        fence = code_fence(code)
        context = (f"File: {src.get('path')} ({language}), lines {src.get('start_line')}-{src.get('end_line')}\n"
                   f"{fence}{language}\n{code}\n{fence}")
        text = (f"Question: {content.get('question', '')}\n\nThinking trace: {content.get('thinking_trace', '')}\n\n"
                f"Answer: {content.get('answer', '')}")
        return context, text
    lines = ["Anchor modules and their symbols:"]
    for module in sample.source.get("modules", []):
        names = sorted({d.qualified for defs in index.definitions.values() for d in defs if d.path == module})
        lines.append(f"- {module}: {', '.join(names) or '(no symbols)'}")
    raw = content.get("proposal")
    proposal: dict[str, Any] = raw if isinstance(raw, dict) else {}
    text = (f"Requirement: {content.get('requirement', '')}\n\nThinking trace: {content.get('thinking_trace', '')}\n\n"
            f"Proposal:\n{render_proposal(proposal) if proposal.get('summary') else proposal}")
    return "\n".join(lines), text


def describe_judge(report: JudgeReport) -> list[str]:
    if not report.requests:
        return ["judge: every eligible sample already has scores"]
    return [f"judge: {report.judged} samples scored from {report.requests} requests (cache hits {report.cache_hits}, "
            f"LLM calls {report.llm_calls}, failed {len(report.failures)})"]
