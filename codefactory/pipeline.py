"""The whole job as plain functions: scan → chunk → skeleton (`snapshot`) → generate → store.

The CLI is a thin shell over these; tests and other tools call them directly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codefactory import __version__, dataset_caches
from codefactory.cache import ReplyCache, cache_key
from codefactory.fileio import atomic_write_jsonl
from codefactory.generate import GenerationStats, Reply, Request, generate
from codefactory.judge import JudgeReport, judge_live
from codefactory.llm import LLM
from codefactory.lock import output_lock
from codefactory.models import Chunk, Sample
from codefactory.prompts import load_prompt
from codefactory.quality import Assessment, assess_dataset, read_quality, sft_record
from codefactory.scene1 import Scene1Job, plan_scene1
from codefactory.scene1 import samples_from_reply as scene1_samples
from codefactory.scene2 import Anchor, Scene2Job, plan_scene2
from codefactory.scene2 import sample_from_reply as scene2_sample
from codefactory.secrets import redact_all
from codefactory.snapshot import Snapshot, Workspace, take_snapshot, write_chunks, write_skeleton
from codefactory.store import DatasetStore, Pending, next_pending
from codefactory.tokens import count_tokens
from codefactory.ui import progress_bar

SERVER_DEFAULT_MODEL = "(server default)"  # dry runs against an endpoint whose model was not named


@dataclass
class RunReport:
    command: str
    commit: str
    chunks: int = 0
    stats: GenerationStats = field(default_factory=GenerationStats)
    samples: int = 0
    added: int = 0
    retired: int = 0
    moved: int = 0  # live samples whose code moved or was renamed: provenance updated, no LLM call
    version: int | None = None
    dry_run: bool = False
    estimated_prompt_tokens: int = 0
    estimated_completion_tokens: int = 0
    plan: list[tuple[str, int, int]] = field(default_factory=list)  # dry runs: (label, prompt, completion tokens)
    outputs: list[Path] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)  # quality.json counts: kept, dropped by reason, flags
    judge: JudgeReport | None = None
    # Secrets replaced by <REDACTED:kind>, by kind: in the files read (before any prompt) and in replies.
    secrets_redacted: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.stats.failures)


def run_generation(
    ws: Workspace,
    snapshot: Snapshot,
    *,
    command: str,
    scene1_chunks: Sequence[Chunk] = (),
    qa_count: int = 3,
    scene2_count: int = 0,
    scene2_anchors: Sequence[Anchor] = (),
    retired: Sequence[str] = (),
    moved: dict[str, dict[str, Any]] | None = None,
    pending: Pending | None = None,
    dry_run: bool = False,
    from_commit: str | None = None,
    store: DatasetStore | None = None,
) -> RunReport:
    """Generate for the given chunks and proposals, then record a dataset version.

    An incremental run also passes the proposal slots to re-ask (`scene2_anchors`), the samples it retires
    and the provenance updates (`moved`), all recorded in the same version, and the work it leaves for a
    later run (`pending`, default: what was pending before). `store`: the caller's, when it has read the
    dataset already (what it learnt of the raw logs is reused).
    """
    started = time.monotonic()
    backend, model = ws.backend_and_model
    llm: LLM | None = None
    if model is None and not dry_run:
        llm = ws.open_llm()
        model = llm.model
    model = model or SERVER_DEFAULT_MODEL
    params = ws.params
    repo_name = ws.repo.name
    jobs1 = plan_scene1(scene1_chunks, repo_name=repo_name, qa_count=qa_count, model=model, params=params)
    jobs2 = plan_scene2(snapshot.skeleton, snapshot.ranked, repo_name=repo_name, count=scene2_count,
                        snippets_per_proposal=ws.config["scene2.snippets"], model=model, params=params,
                        seed=ws.config["seed"], anchors=scene2_anchors or None) if scene2_count or scene2_anchors else []
    requests = [j.request for j in jobs1] + [j.request for j in jobs2]
    report = RunReport(command=command, commit=snapshot.commit, chunks=len(snapshot.chunks), dry_run=dry_run)
    for file in snapshot.scan.files:
        report.secrets_redacted.update(dict(file.secrets))
    cache = ReplyCache(ws.cache_dir)
    writing = ExitStack()
    try:
        if dry_run:
            _write_dry_run(ws, report, requests, cache)
            return report

        writing.enter_context(write_lock(ws))
        store = store or ws.dataset_store()
        all_jobs: list[Scene1Job | Scene2Job] = [*jobs1, *jobs2]  # annotated: mypy would join them to list[object]
        by_key = {j.request.key: j for j in all_jobs}
        produced: list[Sample] = []
        answered: set[str] = set()

        if llm is None and any(r.key not in cache for r in requests):
            llm = ws.open_llm()
        try:
            # The raw log takes the samples in batches, and fsyncs them at the end: see DatasetStore.appending.
            with store.appending() as log_samples, \
                    progress_bar(f"{command}: generating", len(requests), enabled=ws.progress) as advance:

                def on_reply(request: Request, reply: Reply) -> None:
                    job = by_key[request.key]
                    answered.add(request.key)
                    if isinstance(job, Scene1Job):
                        new = scene1_samples(job, reply, repo_name=repo_name, commit=snapshot.commit,
                                             backend=backend, params=params)
                    else:
                        new = [scene2_sample(job, reply, repo_name=repo_name, commit=snapshot.commit,
                                             backend=backend, params=params)]
                    report.secrets_redacted.update(reply.secrets)
                    if reply.cached:  # again, however old the reply: nothing secret-shaped enters the dataset
                        for sample in new:  # (a fresh reply was redacted by these very rules before it was cached)
                            sample.content, found = redact_all(sample.content)
                            report.secrets_redacted.update(found)
                    log_samples(new)
                    produced.extend(new)

                report.stats = generate(requests, llm=llm, cache=cache, on_reply=on_reply,
                                        concurrency=ws.config["concurrency"], max_requests=ws.config["max_requests"],
                                        advance=advance)
        finally:
            if llm is not None:
                llm.close()

        order = {r.key: i for i, r in enumerate(requests)}  # not arrival order: the same dataset however it ran
        produced.sort(key=lambda s: order[s.generation["cache_key"]])
        version = store.commit_version(from_commit=from_commit, to_commit=snapshot.commit,
                                       added=[s.id for s in produced],
                                       retired=[*retired, *superseded(store, produced)], moved=moved)
        undone, done = _split_done(jobs1, jobs2, answered)
        store.write_pending(next_pending(store.pending() if pending is None else pending, undone, done))
        report.samples = len(produced)
        report.added = len(version.added) if version else 0
        report.retired = len(version.retired) if version else 0
        report.version = version.version if version else None
        if ws.config["judge.enabled"]:
            report.judge = judge_live(ws, store, snapshot.commit)
            report.stats.failures.extend(report.judge.failures)  # unjudged samples: the next run asks again
        assessment = rebuild_dataset(ws, store, source_commit=snapshot.commit, model=model, snapshot=snapshot,
                                     base_commit=from_commit)
        store.keep_indexes()  # for the next run, which then indexes only what it appends
        dataset_caches.prune(ws.cache_dir.parent, ws.out)  # and none of those of datasets since deleted
        report.quality = assessment.counts()  # what quality.json records
        report.outputs = [store.out / f for f in ("scene1_sft.jsonl", "scene2_sft.jsonl", "combined_sft.jsonl")]
        return report
    finally:
        cache.close()
        writing.close()
        report.elapsed = time.monotonic() - started


def write_lock(ws: Workspace, dry_run: bool = False) -> AbstractContextManager[None]:
    """The output directory's one-writer lock for a command that writes the dataset (dry runs don't)."""
    return nullcontext() if dry_run else output_lock(ws.out, timeout=ws.config["lock_timeout"])


def _split_done(jobs1: Sequence[Scene1Job], jobs2: Sequence[Scene2Job], answered: set[str]) -> tuple[Pending, Pending]:
    """(undone, done) work of this run; undone (deferred by max_requests, or failed) is left for the next run."""
    undone: Pending = {"scene1": [], "scene2": []}
    done: Pending = {"scene1": [], "scene2": []}
    for job1 in jobs1:
        entry: dict[str, Any] = {"id": job1.chunk.id, "path": job1.chunk.path}  # Pending's entry type
        (done if job1.request.key in answered else undone)["scene1"].append(entry)
    for job2 in jobs2:
        anchor = job2.anchor
        entry = {"index": anchor.index, "theme": anchor.theme, "modules": list(anchor.modules)}
        (done if job2.request.key in answered else undone)["scene2"].append(entry)
    return undone, done


def superseded(store: DatasetStore, produced: Sequence[Sample]) -> list[str]:
    """Live samples replaced by this run's: same chunk (scene1) or proposal slot (scene2), other inputs or settings."""
    live = store.live()
    if not live.order or not produced:
        return []  # a first build: nothing to replace, and its whole raw log would match the needles
    fresh_keys = {s.generation["cache_key"] for s in produced}
    slots = {_slot(s) for s in produced}
    retired = []
    for scene in ("scene1", "scene2"):
        # Only a sample of a produced chunk can share its slot: read just those in a large log.
        texts = {"chunk_sha256": {s.source["chunk_sha256"] for s in produced if s.scene == "scene1"}}
        for sample in store.read_raw(scene, sources=texts if scene == "scene1" else None).values():
            if sample.id in live and _slot(sample) in slots and sample.generation["cache_key"] not in fresh_keys:
                retired.append(sample.id)
    return retired


def _slot(sample: Sample) -> tuple[str, str]:
    if sample.scene == "scene1":
        return ("scene1", sample.source["chunk_sha256"])
    return ("scene2", sample.input.get("theme", "") + "|" + ",".join(sample.source["modules"]))


def rebuild_dataset(ws: Workspace, store: DatasetStore, *, source_commit: str, model: str | None = None,
                    snapshot: Snapshot | None = None, base_commit: str | None = None) -> Assessment:
    """Render the SFT files; the quality verdicts they follow are returned (and in quality.json). `snapshot`
    (what this run scanned at `source_commit`, incremental from `base_commit` when partial) spares quality
    assessment a scan of its own."""
    c = ws.config
    system_prompt = c["sft.system_prompt"].replace("{repo}", ws.repo.name)
    backend, configured = ws.backend_and_model
    model = model or configured or SERVER_DEFAULT_MODEL

    previous = read_quality(store.out)
    assessment = assess_dataset(ws, store, source_commit, snapshot=snapshot, base=base_commit)  # why each live sample is in or out: quality.json

    def convert(sample: Sample, version: int) -> dict[str, Any] | None:
        return sft_record(sample, version, assessment, system_prompt=system_prompt,
                          think_style=c["sft.think_style"], with_context=c["sft.with_context"])

    manifest = {
        "repo": ws.repo.name,
        "source_commit": source_commit,
        "generator": {"tool": f"codefactory {__version__}", "backend": backend, "model": model,
                      "prompt_versions": {s: load_prompt(s).version for s in ("scene1", "scene2")}},
        # What shapes an SFT record besides the sample; while it holds, a rebuild only renders what changed.
        "sft_fingerprint": cache_key(tool=__version__, system_prompt=system_prompt,
                                     sft={k: c[k] for k in c if k.startswith("sft.")}),
    }
    # A verdict changed for a sample the changelog does not name (a better duplicate arrived, a judge score,
    # the repository): the SFT files cannot be patched this time, so they are rendered in full.
    store.rebuild(convert, manifest, full=assessment.changed_since(previous))
    return assessment


def _write_dry_run(ws: Workspace, report: RunReport, requests: Sequence[Request], cache: ReplyCache) -> None:
    backend, model = ws.backend_and_model
    model = model or SERVER_DEFAULT_MODEL
    records = []
    for request in requests:
        if request.key in cache:
            report.stats.cache_hits += 1
            continue
        prompt_tokens = sum(count_tokens(m["content"]) + 4 for m in request.messages)
        completion_tokens = _estimated_completion_tokens(request)
        report.estimated_prompt_tokens += prompt_tokens
        report.estimated_completion_tokens += completion_tokens
        report.plan.append((request.label, prompt_tokens, completion_tokens))
        records.append({"cache_key": request.key, "label": request.label, "backend": backend, "model": model,
                        "messages": request.messages, "schema": request.schema, "params": request.params.as_dict(),
                        "estimated_prompt_tokens": prompt_tokens, "estimated_completion_tokens": completion_tokens})
    report.stats.requests = len(requests)
    path = ws.out / "dry_run_requests.jsonl"
    atomic_write_jsonl(path, records)
    report.outputs = [path]


def _estimated_completion_tokens(request: Request) -> int:
    """Typical fill of the schemas, measured on real replies: ~230 tokens a Q&A pair, ~900 a proposal."""
    if request.scene == "scene1":
        return 230 * request.schema["properties"]["pairs"]["minItems"]
    return 900


def run_scene1(ws: Workspace, *, dry_run: bool = False) -> RunReport:
    """Q&A for up to `scene1.limit` chunks, most informative first; writes chunks.json too."""
    with write_lock(ws, dry_run):
        snapshot = take_snapshot(ws)
        limit = ws.config["scene1.limit"]
        selected = snapshot.ranked[:limit] if limit is not None else snapshot.ranked
        report = run_generation(ws, snapshot, command="scene1", scene1_chunks=selected,
                                qa_count=ws.config["scene1.qa_count"], dry_run=dry_run)
        report.outputs.insert(0, write_chunks(ws, snapshot.chunks))
        return report


def run_scene2(ws: Workspace, *, dry_run: bool = False) -> RunReport:
    """`scene2.count` design proposals; writes the skeleton files too."""
    with write_lock(ws, dry_run):
        snapshot = take_snapshot(ws)
        report = run_generation(ws, snapshot, command="scene2", scene2_count=ws.config["scene2.count"],
                                dry_run=dry_run)
        report.outputs[:0] = write_skeleton(ws, snapshot.skeleton)
        return report


def run_build(ws: Workspace, *, dry_run: bool = False, rev: str | None = None) -> RunReport:
    """chunks + skeleton + Scene-1 + Scene-2 + combined dataset, as one dataset version."""
    with write_lock(ws, dry_run):
        snapshot = take_snapshot(ws, rev)
        limit = ws.config["scene1.limit"]
        selected = snapshot.ranked[:limit] if limit is not None else snapshot.ranked
        report = run_generation(ws, snapshot, command="build", scene1_chunks=selected,
                                qa_count=ws.config["scene1.qa_count"], scene2_count=ws.config["scene2.count"],
                                dry_run=dry_run)
        report.outputs[:0] = [write_chunks(ws, snapshot.chunks), *write_skeleton(ws, snapshot.skeleton)]
        return report
