"""Chunks and symbols of every file of a tree, fanned out to worker processes when the tree is large.

On the CPython standard library (7.2 s of CPU serially) two workers spend 8.6 s of CPU between them
plus 0.5 s in the parent, so idle cores turn into wall time (bench/README.md). The result is identical
to the serial path, which small trees, single-core machines, platforms without a safe fork, and
processes that already run other threads take (`workers.worker_count`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .chunk import chunk_file
from .models import Chunk, SourceFile
from .scan import Examined, ScanResult, Selection, detect_language, examine
from .skeleton import FileSymbols, extract_symbols
from .workers import fork_map, worker_count

# Below this much text the serial path wins: forking and shipping results back cost ~0.1 s.
PARALLEL_MIN_CHARS = 4_000_000


def analyze_files(
    files: Sequence[SourceFile],
    *,
    max_tokens: int,
    min_tokens: int,
    workers: int | None = None,
    min_chars: int = PARALLEL_MIN_CHARS,
) -> tuple[list[Chunk], dict[str, FileSymbols]]:
    """(chunks of every file in file order, symbols by path), as `chunk_files` and `extract_symbols` give them."""
    sizes = [len(f.text) for f in files]
    count = worker_count(sizes, workers, min_chars)

    def one(i: int) -> tuple[list[Chunk], FileSymbols]:
        return _analyze_one(files[i], max_tokens, min_tokens)

    results = [one(i) for i in range(len(files))] if count < 2 else fork_map(one, sizes, count)
    chunks = [c for file_chunks, _ in results for c in file_chunks]
    return chunks, {symbols.path: symbols for _, symbols in results}


def scan_and_analyze(
    selection: Selection,
    *,
    max_tokens: int,
    min_tokens: int,
    redact_secrets: bool = True,
    workers: int | None = None,
    min_chars: int = PARALLEL_MIN_CHARS,
) -> tuple[ScanResult, list[Chunk], dict[str, FileSymbols]]:
    """`scan` then `analyze_files` of a selection's blobs, in one pass per file: on a large tree the
    workers fork once, and each file is read, decoded and redacted in the process that chunks it."""
    paths, sizes = selection.paths, selection.sizes
    oids = [selection.entries[i].oid for i in selection.picked]
    count = worker_count(sizes, workers, min_chars)

    def one(k: int) -> tuple[Examined, tuple[list[Chunk], FileSymbols] | None]:
        examined = examine(paths[k], selection.read(k), redact_secrets)
        text, _, found = examined
        if text is None:
            return examined, None
        file = SourceFile(path=paths[k], language=detect_language(paths[k]), text=text, blob_sha=oids[k],
                          secrets=found)
        return examined, _analyze_one(file, max_tokens, min_tokens)

    results = [one(k) for k in range(len(paths))] if count < 2 else fork_map(one, sizes, count)
    scanned = selection.assemble([examined for examined, _ in results])
    analyzed = [result for _, result in results if result is not None]
    chunks = [c for file_chunks, _ in analyzed for c in file_chunks]
    return scanned, chunks, {symbols.path: symbols for _, symbols in analyzed}


def _analyze_one(file: SourceFile, max_tokens: int, min_tokens: int) -> tuple[list[Chunk], FileSymbols]:
    return chunk_file(file, max_tokens=max_tokens, min_tokens=min_tokens), extract_symbols(file)
