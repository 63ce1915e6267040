"""Human summaries of a run and of the dataset (plain strings; the CLI prints them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from codefactory.fileio import read_jsonl
from codefactory.pipeline import RunReport
from codefactory.judge import describe_judge
from codefactory.quality import describe_counts, read_quality
from codefactory.store import SCENES, DatasetStore


def describe_report(report: RunReport, *, verbose: bool = False) -> list[str]:
    s = report.stats
    if report.dry_run:
        planned = [f"  {label}: ~{p} prompt + ~{c} completion tokens" for label, p, c in report.plan] if verbose else []
        return [*planned,
            f"{report.command} (dry run) at {report.commit[:10]}: {report.chunks} chunks, {s.requests} requests "
            f"({s.cache_hits} already cached, {s.requests - s.cache_hits} to send)",
            f"estimated tokens: {report.estimated_prompt_tokens} prompt + {report.estimated_completion_tokens} completion",
            *_secrets(report),
            *(f"wrote {p}" for p in report.outputs),
        ]
    version = f"dataset v{report.version}" if report.version else "dataset unchanged"
    lines = [
        f"{report.command} at {report.commit[:10]}: {report.samples} samples from {s.requests} requests "
        f"(cache hits {s.cache_hits}, LLM calls {s.llm_calls}, failed {len(s.failures)}"
        + (f", deferred {s.deferred}" if s.deferred else "") + ")",
        f"{version}: +{report.added} added, -{report.retired} retired"
        + (f", {report.moved} moved (provenance updated)" if report.moved else "")
        + f" · tokens {s.prompt_tokens} prompt + "
        f"{s.completion_tokens} completion · {report.elapsed:.1f}s",
    ]
    if s.deferred:
        lines.append(f"{s.deferred} requests deferred (max_requests, scene2.max_new_per_run); "
                     "the next run picks them up")
    lines.extend(_secrets(report))
    for label, reason in s.failures:
        lines.append(f"failed: {label}: {reason}")
    if s.failures:
        lines.append(f"{len(s.failures)} requests failed; finished samples are kept: run the same command again "
                     "to retry the failed ones")
    if report.judge is not None:
        lines.extend(describe_judge(report.judge))
    lines.extend(describe_counts(report.quality))
    if report.outputs:
        lines.append(f"dataset: {report.outputs[-1]}")
    return lines


def _secrets(report: RunReport) -> list[str]:
    found = report.secrets_redacted
    if not found:
        return []
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(found.items()))
    return [f"secrets redacted: {sum(found.values())} ({kinds}), replaced by <REDACTED:kind> before any prompt "
            "or output"]


def describe_stats(out: Path) -> list[str]:
    store = DatasetStore(out)
    versions = store.versions()
    if not versions:
        return [f"no dataset in {out} yet (run `codefactory build`)"]
    live = store.live()
    lines = [f"dataset {out}: version {versions[-1].version} at commit {versions[-1].to_commit[:10]}"]
    for scene in SCENES:
        raw = store.read_raw(scene)
        samples = [raw[i] for i in live.ids() if i in raw]
        sources = [live.moved.get(s.id, s.source) for s in samples]  # where renamed or moved code is now
        usage: Counter[str] = Counter()
        for sample in samples:
            usage.update(sample.generation.get("usage", {}))
        if scene == "scene1":
            files = {s["path"] for s in sources}
            symbols = {s["chunk_id"] for s in sources}
            coverage = f", {len(files)} files, {len(symbols)} chunks covered"
        else:
            coverage = f", {len({m for s in sources for m in s['modules']})} modules anchored"
        lines.append(f"{scene}: {len(samples)} live of {len(raw)} generated{coverage}; "
                     f"tokens {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion")
    pending = store.pending()
    if pending["scene1"] or pending["scene2"]:
        lines.append(f"pending: {len(pending['scene1'])} chunks, {len(pending['scene2'])} proposals "
                     "(deferred or failed; the next `codefactory incremental` picks them up)")
    moved = {r["version"]: len(r.get("moved", {})) for r in read_jsonl(store.versions_path)}
    lines.extend(describe_counts((read_quality(out) or {}).get("counts", {})))
    lines.append("versions:")
    for v in versions:
        lines.append(f"  v{v.version} {v.created_at} {(v.from_commit or 'none')[:10]}..{v.to_commit[:10]} "
                     f"+{len(v.added)} -{len(v.retired)}" + (f" ~{moved[v.version]} moved" if moved.get(v.version) else ""))
    return lines
