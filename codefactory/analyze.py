"""Chunks, symbols and references of every file of a tree, fanned out to worker processes when the tree is large.

Everything later stages need of a file's text is worked out in one pass per file, in the process that
reads it: its chunks (with their chunks.json encoding), its symbols, and the names it mentions (for the
skeleton's centrality). The parent then only gathers results, so on a large tree the workers fork once
and idle cores turn into wall time (bench/README.md). The result is identical to the serial path, which
small trees, single-core machines, platforms without a safe fork, and processes that already run other
threads take (`workers.worker_count`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from .chunk import chunk_file
from .models import Chunk, SourceFile
from .scan import Examined, ScanResult, Selection, detect_language, examine
from .secrets import load_rules
from .skeleton import FileRefs, FileSymbols, extract_symbols, file_refs
from .tokens import load_tokenizer
from .workers import fork_map, worker_count

# Below this much text the serial path wins: forking and shipping results back cost ~0.1 s.
PARALLEL_MIN_CHARS = 4_000_000
# From this much text on, gigatoken's quicker counting pays for its slower start (tokens.py): its ~0.22 s more
# to load runs before the workers fork, its savings are split over them (~0.02 s a million characters of wall
# time on two cores). 6.4 M characters of the stdlib: 0.98-1.03 s with bpe-openai, 1.05-1.2 s with gigatoken.
BULK_COUNT_MIN_CHARS = 12_000_000

T = TypeVar("T")


@dataclass(frozen=True)
class Analysis:
    """What the pipeline keeps of a tree's texts: every chunk in file order, symbols and references by path."""

    chunks: list[Chunk]
    symbols: dict[str, FileSymbols]
    refs: dict[str, FileRefs]


FileAnalysis = tuple[list[Chunk], FileSymbols, FileRefs]


def analyze_files(
    files: Sequence[SourceFile],
    *,
    max_tokens: int,
    min_tokens: int,
    workers: int | None = None,
    min_chars: int = PARALLEL_MIN_CHARS,
) -> Analysis:
    """The chunks, symbols and references of `files`, as `chunk_file`, `extract_symbols` and `file_refs` give them."""
    sizes = [len(f.text) for f in files]

    def one(i: int) -> FileAnalysis:
        return _analyze_one(files[i], max_tokens, min_tokens)

    return _gathered(_each(one, sizes, worker_count(sizes, workers, min_chars),
                           bulk=sum(sizes) >= BULK_COUNT_MIN_CHARS))


def scan_and_analyze(
    selection: Selection,
    *,
    max_tokens: int,
    min_tokens: int,
    redact_secrets: bool = True,
    workers: int | None = None,
    min_chars: int = PARALLEL_MIN_CHARS,
    chunks: bool = True,
    skeleton: bool = True,
) -> tuple[ScanResult, Analysis]:
    """`scan` then `analyze_files` of a selection's blobs, in one pass per file: on a large tree the
    workers fork once, and each file is read, decoded and redacted in the process that chunks it.

    `chunks` / `skeleton` False: that part is left out (no chunks; no symbols and no words for centrality), for
    a command that writes only the other."""
    paths, sizes = selection.paths, selection.sizes
    oids = [selection.entries[i].oid for i in selection.picked]

    def one(k: int) -> tuple[Examined, FileAnalysis | None]:
        examined = examine(paths[k], selection.read(k), redact_secrets)
        text, _, found = examined
        if text is None:
            return examined, None
        file = SourceFile(path=paths[k], language=detect_language(paths[k]), text=text, blob_sha=oids[k],
                          secrets=found)
        return examined, _analyze_one(file, max_tokens, min_tokens, chunks=chunks, skeleton=skeleton)

    # Without chunking, only the skeleton's budget counts tokens: a few files' worth, bpe-openai's
    bulk = chunks and sum(sizes) >= BULK_COUNT_MIN_CHARS
    results = _each(one, sizes, worker_count(sizes, workers, min_chars), shared=load_rules if redact_secrets else None,
                    bulk=bulk)
    scanned = selection.assemble([examined for examined, _ in results])
    return scanned, _gathered([result for _, result in results if result is not None])


def _each(job: Callable[[int], T], sizes: Sequence[int], workers: int, *, bulk: bool,
          shared: Callable[[], None] | None = None) -> list[T]:
    """[job(0), job(1), ...], one index per size, in `workers` forked processes when there are several.
    `bulk`: the jobs count a large tree's worth of tokens, so counts go to gigatoken (tokens.py). `shared` loads
    what every job uses, called before forking so that the workers share it."""
    if workers < 2:
        if bulk:
            load_tokenizer(bulk=True)
        return [job(i) for i in range(len(sizes))]
    # Once, before forking: the workers share them instead of each building its own.
    if shared is not None:
        shared()
    if bulk:
        # gigatoken takes ~0.25 s to load, on one core: a worker forked before it meanwhile starts on the
        # smallest files, counting them with bpe-openai (the same counts, tokens.py).
        return fork_map(job, sizes, workers, setup=partial(load_tokenizer, bulk=True))
    load_tokenizer()
    return fork_map(job, sizes, workers)


def _analyze_one(file: SourceFile, max_tokens: int, min_tokens: int, *, chunks: bool = True,
                 skeleton: bool = True) -> FileAnalysis:
    file_chunks = chunk_file(file, max_tokens=max_tokens, min_tokens=min_tokens) if chunks else []
    # Their JSON (and the symbols' skeleton text) is made here, in the worker, and sent back with them (cached
    # on each object).
    for chunk in file_chunks:
        chunk.json_element  # noqa: B018
    if not skeleton:
        return file_chunks, FileSymbols(path=file.path, language=file.language, symbols=[]), FileRefs("", "")
    symbols = extract_symbols(file)
    if symbols.symbols:  # only files with symbols are in the skeleton
        symbols.json_element  # noqa: B018
        symbols.section  # noqa: B018
    return file_chunks, symbols, file_refs(file)


def _gathered(results: Sequence[FileAnalysis]) -> Analysis:
    return Analysis(chunks=[c for file_chunks, _, _ in results for c in file_chunks],
                    symbols={symbols.path: symbols for _, symbols, _ in results},
                    refs={symbols.path: refs for _, symbols, refs in results})
