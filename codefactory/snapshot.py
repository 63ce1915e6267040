"""What the pipeline knows about one commit: scan → chunk → skeleton, and where a run reads and writes.

`Workspace` holds a run's collaborators; `take_snapshot` selects a commit's files, redacts, chunks and outlines
them (in forked workers on large trees) and builds the skeleton; `write_chunks` and `write_skeleton` write them.
`take_chunks` and `take_skeleton` do only the part one command writes.
Generation (`pipeline`) starts from a snapshot. The `scan`, `chunk` and `skeleton` commands need nothing more,
so they do not import the generation side (rich, the scenes, quality assessment: ~40 ms of each such command).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from codefactory.analyze import Analysis, scan_and_analyze
from codefactory.config import Config
from codefactory.fileio import atomic_write_json, atomic_write_text
from codefactory.gitrepo import GitRepo
from codefactory.llm import LLM, GenerationParams, LLMSettings, bundled_model_path, open_llm
from codefactory.models import Chunk
from codefactory.scan import ScanResult, scan, select
from codefactory.skeleton import Skeleton, build_skeleton
from codefactory.store import DatasetStore
from codefactory.workers import paused_gc

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


@dataclass
class Workspace:
    """The collaborators of one run: where to read, where to write, how to generate."""

    repo: GitRepo
    config: Config
    progress: bool = True

    @property
    def out(self) -> Path:
        out = Path(self.config["out"])
        return out if out.is_absolute() else self.repo.root / out

    @property
    def cache_dir(self) -> Path:
        return self.repo.root / ".codefactory" / "cache"

    def dataset_store(self) -> DatasetStore:
        """The dataset in `out`, its raw logs' indexes kept beside the reply cache between runs."""
        return DatasetStore(self.out, index_dir=self.cache_dir.parent / "rawlog")

    @property
    def own_paths(self) -> list[str]:
        """codefactory's own output, never fed back in as source when it is committed to the repo."""
        paths = ["/.codefactory/"]
        try:
            paths.append("/" + self.out.relative_to(self.repo.root).as_posix().strip("/") + "/")
        except ValueError:
            pass  # the output directory lies outside the repository
        return paths

    @property
    def scan_options(self) -> dict[str, Any]:
        """The scan settings of every command: what `scan` lists is exactly what the pipeline processes."""
        c = self.config
        return {"include": list(c["scan.include"]), "exclude": [*c["scan.exclude"], *self.own_paths],
                "max_file_bytes": c["scan.max_file_bytes"]}

    def scan(self, rev: str | None = None, paths: Collection[str] | None = None) -> ScanResult:
        return scan(self.repo, rev or self.config["rev"], paths=paths, **self.scan_options)

    @cached_property
    def backend_and_model(self) -> tuple[str, str | None]:
        """Resolved without loading anything, so dry runs and cache keys agree with real runs.

        The model is None when an endpoint is configured without one: the server's default
        model is then asked for (a /models call, never a generation) before keys are computed.
        """
        backend = self.config["backend"]
        if backend == "auto":
            backend = "openai" if (self.config.api_key or self.config["base_url"]) else "local"
        if self.config["model"]:
            return backend, self.config["model"]
        if backend == "local":
            path = self.config["llm.model_path"] or bundled_model_path()
            return backend, Path(path).stem if path else "local-model"
        return backend, None if self.config["base_url"] else DEFAULT_OPENAI_MODEL

    @property
    def params(self) -> GenerationParams:
        c = self.config
        seed = c["seed"]
        return GenerationParams(temperature=c["llm.temperature"], top_p=c["llm.top_p"],
                                max_tokens=c["llm.max_tokens"], seed=seed, repeat_penalty=c["llm.repeat_penalty"])

    def open_llm(self, model: str | None = None) -> LLM:
        """The configured backend; `model` overrides the configured model (the judge may use another)."""
        c = self.config
        backend, configured = self.backend_and_model
        settings = LLMSettings(backend=backend, model=model or configured, base_url=c["base_url"], api_key=c.api_key,
                               timeout=c["llm.timeout"], max_retries=c["llm.max_retries"],
                               model_path=c["llm.model_path"], n_ctx=c["llm.n_ctx"],
                               response_format=c["llm.response_format"])
        llm = open_llm(settings)
        llm.check()
        return llm


@dataclass
class Snapshot:
    """What the pipeline knows about one commit: selected files, chunks, skeleton."""

    scan: ScanResult
    chunks: list[Chunk]
    skeleton: Skeleton
    # None: `scan` holds the whole tree. Else an incremental run rescanned only these paths (each in `scan`
    # or gone); the others are as at its base commit. Quality assessment patches its index with them.
    rescanned: frozenset[str] | None = None

    @property
    def commit(self) -> str:
        return self.scan.commit

    @cached_property
    def ranked(self) -> list[Chunk]:
        from codefactory.scene1 import rank_chunks  # the generation side, not imported by scan/chunk/skeleton

        return rank_chunks(self.chunks, self.skeleton.centrality)


def take_snapshot(ws: Workspace, rev: str | None = None) -> Snapshot:
    result, analysis = _analyzed(ws, rev)
    return Snapshot(result, analysis.chunks, _skeleton(ws, result, analysis))


def take_chunks(ws: Workspace, rev: str | None = None) -> tuple[ScanResult, list[Chunk]]:
    """A commit's files and chunks, without the skeleton: what `codefactory chunk` writes."""
    result, analysis = _analyzed(ws, rev, skeleton=False)
    return result, analysis.chunks


def take_skeleton(ws: Workspace, rev: str | None = None) -> tuple[ScanResult, Skeleton]:
    """A commit's files and skeleton, without chunking them: what `codefactory skeleton` writes."""
    result, analysis = _analyzed(ws, rev, chunks=False)
    return result, _skeleton(ws, result, analysis)


def _analyzed(ws: Workspace, rev: str | None, *, chunks: bool = True,
              skeleton: bool = True) -> tuple[ScanResult, Analysis]:
    c = ws.config
    # The analysis (and the skeleton, below) build many objects and no cycles, which cyclic collections would
    # walk again and again: 7% of a serial analysis of the stdlib, ~0.1 s of the skeleton after a parallel one.
    # What they make lives as long as the run, so later collections leave it alone too (`kept`).
    with paused_gc(kept=True):
        # One pass per file for its redaction, chunks and symbols (in worker processes on large trees).
        selection = select(ws.repo, rev or c["rev"], **ws.scan_options)
        return scan_and_analyze(selection, max_tokens=c["chunk.max_tokens"], min_tokens=c["chunk.min_tokens"],
                                chunks=chunks, skeleton=skeleton)


def _skeleton(ws: Workspace, result: ScanResult, analysis: Analysis) -> Skeleton:
    with paused_gc(kept=True):  # as in _analyzed
        return build_skeleton(result.files, token_budget=ws.config["skeleton.token_budget"], repo_name=ws.repo.name,
                              symbols=analysis.symbols, refs=analysis.refs)


def write_chunks(ws: Workspace, chunks: Sequence[Chunk]) -> Path:
    path = ws.out / "chunks.json"
    atomic_write_json(path, [c.json_element for c in chunks])
    return path


def write_skeleton(ws: Workspace, skeleton: Skeleton) -> list[Path]:
    txt, js = ws.out / "project_skeleton.txt", ws.out / "project_skeleton.json"
    atomic_write_text(txt, skeleton.to_text())
    atomic_write_json(js, skeleton.to_json_value())
    return [txt, js]
