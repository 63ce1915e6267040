"""Generation: throughput against a slow server, pipeline overhead against an instant one, prompt size.

Generation runs through `pipeline.run_generation` on real chunks, so the cache, schema validation,
the raw log, the changelog and the SFT rebuild are all inside the figure, as in a real build.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.corpora import Corpus
from bench.harness import PhaseTimer, Row, fresh, reset_cache, workspace
from bench.llmserver import LoopbackLLM
import codefactory.llm_openai  # noqa: F401  # the openai import (~1 s) is paid once per process, not per sample
from codefactory import pipeline
from codefactory.cache import ReplyCache
from codefactory.generate import generate
from codefactory.pipeline import RunReport, Snapshot, run_generation, take_snapshot
from codefactory.prompts import load_prompt
from codefactory.scene1 import plan_scene1
from codefactory.tokens import count_tokens


def _generate(corpus: Corpus, snapshot: Snapshot, server: LoopbackLLM, scratch: Path, count: int,
              concurrency: int) -> RunReport:
    reset_cache(corpus.root)
    ws = workspace(corpus.root, server.base_url, fresh(scratch / f"gen-{corpus.name}"), concurrency=concurrency)
    chunks = _distinct(snapshot)[:count]
    return run_generation(ws, snapshot, command="bench", scene1_chunks=chunks, qa_count=ws.config["scene1.qa_count"])


def _distinct(snapshot: Snapshot) -> list:
    """Ranked chunks with distinct texts: identical inputs share one request, and each must be a request."""
    seen: set[str] = set()
    return [c for c in snapshot.ranked if not (c.sha256 in seen or seen.add(c.sha256))]  # type: ignore[func-returns-value]


def measure_throughput(corpus: Corpus, scratch: Path, *, latency: float, levels: list[int],
                       rounds: int) -> tuple[Row, dict]:
    """Requests per second of the generation engine at each concurrency, against concurrency / latency.

    `generate()` runs real Scene-1 requests through the OpenAI backend with an empty cache. One request
    goes first, untimed: the backend's first request finds the server's structured-output mode while the
    others wait for it, a one-time cost of one latency per run.
    """
    ws = workspace(corpus.root, "http://127.0.0.1:9/v1", scratch / "unused")
    snapshot = take_snapshot(ws)
    chunks = _distinct(snapshot)
    jobs = plan_scene1(chunks, repo_name=ws.repo.name, qa_count=ws.config["scene1.qa_count"], model="bench-model",
                       params=ws.params)
    requests = [j.request for j in jobs]
    needed = 1 + sum(level * rounds for level in levels)
    if len(requests) < needed:
        raise RuntimeError(f"{corpus.name} has {len(requests)} distinct chunks, the throughput run needs {needed}")
    results = []
    reset_cache(corpus.root)
    cache = ReplyCache(corpus.root / ".codefactory" / "cache")
    with LoopbackLLM(latency=latency) as server:
        llm = workspace(corpus.root, server.base_url, scratch / "unused").open_llm()
        try:
            generate(requests[:1], llm=llm, cache=cache, on_reply=lambda r, p: None, concurrency=1)
            start = 1
            for level in levels:
                batch = requests[start:start + level * rounds]
                start += len(batch)
                began = time.perf_counter()
                stats = generate(batch, llm=llm, cache=cache, on_reply=lambda r, p: None, concurrency=level)
                seconds = time.perf_counter() - began
                assert not stats.failures and stats.llm_calls == len(batch), stats
                rate, ideal = len(batch) / seconds, level / latency
                results.append({"concurrency": level, "requests": len(batch), "seconds": round(seconds, 3),
                                "requests_per_s": round(rate, 2), "ideal": ideal, "efficiency": round(rate / ideal, 3)})
        finally:
            llm.close()
            cache.close()
    reset_cache(corpus.root)
    by = {r["concurrency"]: r for r in results}
    at32 = by.get(32, results[-1])
    text = ", ".join(f"{r['concurrency']}: {r['requests_per_s']:.1f}/s ({r['efficiency']:.0%})" for r in results)
    row = Row(f"generation throughput, {latency:g} s server latency (concurrency: req/s, % of ideal)", text,
              "ideal = concurrency ÷ latency", f"{at32['efficiency']:.0%} of ideal at {at32['concurrency']}",
              "≥ 90% of ideal at 32", at32["efficiency"] >= 0.9,
              notes=[f"{rounds} round{'s' * (rounds != 1)} of requests per level through generate() and the OpenAI "
                     "backend, after one untimed request that probes the structured-output mode"])
    return row, {"corpus": corpus.name, "latency": latency, "levels": results}


def measure_overhead(corpus: Corpus, scratch: Path, *, count: int, concurrency: int) -> tuple[Row, dict]:
    """Samples per second when the LLM answers instantly: everything but the model is in the figure."""
    ws = workspace(corpus.root, "http://127.0.0.1:9/v1", scratch / "unused")
    snapshot = take_snapshot(ws)
    with LoopbackLLM(latency=0.0) as server, PhaseTimer({
        "generation": (pipeline, "generate"), "quality assessment": (pipeline, "assess_dataset"),
        "dataset rebuild": (pipeline, "rebuild_dataset"), "superseded": (pipeline, "superseded"),
    }) as phases:
        report = _generate(corpus, snapshot, server, scratch, count, concurrency)
        served = server.stats()
    reset_cache(corpus.root)
    assert not report.failed, report.stats.failures
    rate = report.samples / report.elapsed
    seconds = {k: round(v, 3) for k, v in phases.seconds.items()}
    generation_rate = report.samples / seconds["generation"] if seconds["generation"] else 0.0
    detail = {"corpus": corpus.name, "requests": served.get("requests", 0), "samples": report.samples,
              "seconds": round(report.elapsed, 3), "samples_per_s": round(rate, 1), "concurrency": concurrency,
              "phases": seconds, "generation_samples_per_s": round(generation_rate, 1)}
    row = Row(f"pipeline overhead, zero-latency server ({corpus.name}, {report.samples} samples)",
              f"{rate:.0f} samples/s", goal="≥ 500 samples/s", ok=rate >= 500,
              notes=[f"{served.get('requests', 0)} requests at concurrency {concurrency}, server in its own process; "
                     f"run_generation() end to end: {report.elapsed:.2f} s, of it generation (requests, validation, cache, "
                     f"raw log) {seconds['generation']:.2f} s = {generation_rate:.0f} samples/s, dataset rebuild "
                     f"{seconds['dataset rebuild']:.2f} s (quality assessment {seconds['quality assessment']:.2f} s)"])
    return row, detail


def measure_prompt_tokens(corpus: Corpus, scratch: Path, *, sample: int) -> tuple[Row, dict]:
    """Prompt tokens per Scene-1 sample against a naive prompt: the whole file and the whole skeleton."""
    ws = workspace(corpus.root, "http://127.0.0.1:9/v1", scratch / "unused")
    snapshot = take_snapshot(ws)
    chunks = snapshot.ranked[:sample]
    qa = ws.config["scene1.qa_count"]
    jobs = plan_scene1(chunks, repo_name=ws.repo.name, qa_count=qa, model="bench-model", params=ws.params)
    files = {f.path: f.text for f in snapshot.scan.files}
    skeleton_tokens = count_tokens(snapshot.skeleton.to_text())
    system = load_prompt("scene1").system
    system_tokens = count_tokens(system)
    ours = naive = 0
    file_tokens: dict[str, int] = {}
    for job in jobs:
        ours += sum(count_tokens(m["content"]) for m in job.request.messages)
        path = job.chunk.path
        if path not in file_tokens:
            file_tokens[path] = count_tokens(files[path])
        user = job.request.messages[-1]["content"]
        # The naive prompt: same instructions, but the whole file and the whole skeleton instead of the chunk.
        naive += system_tokens + count_tokens(user) - count_tokens(job.code) + file_tokens[path] + skeleton_tokens
    samples = len(jobs) * qa
    first = {job.request.messages[0]["content"] for job in jobs}
    shared_first = len(first) == 1 and all(job.request.messages[0]["role"] == "system" for job in jobs)
    per, per_naive = ours / samples, naive / samples
    detail = {"corpus": corpus.name, "requests": len(jobs), "samples": samples, "per_sample": round(per, 1),
              "naive_per_sample": round(per_naive, 1), "shared_prefix_tokens": system_tokens,
              "shared_prefix_share": round(system_tokens / (ours / len(jobs)), 3), "skeleton_tokens": skeleton_tokens}
    row = Row(f"prompt tokens per Scene-1 sample ({corpus.name}, {len(jobs)} chunks × {qa} pairs)",
              f"{per:.0f} tokens", f"naive (whole file + skeleton) {per_naive:.0f}", f"{per_naive / per:.1f}× fewer",
              "≥ 2× fewer, shared part first", per_naive / per >= 2 and shared_first,
              notes=[f"every request starts with the same {system_tokens}-token system turn "
                     f"({detail['shared_prefix_share']:.0%} of an average prompt): prefix caches that work at any "
                     "length (vLLM, llama.cpp, DeepSeek) reuse it; OpenAI's starts at 1024-token prefixes, "
                     "longer than a whole Scene-1 prompt" if shared_first else "requests do NOT share their first turn"])
    return row, detail
