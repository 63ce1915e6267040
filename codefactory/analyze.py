"""Chunks and symbols of every file of a tree, fanned out to worker processes when the tree is large.

Parsing (tree-sitter) and tokenizing (bpe-openai) both hold the GIL, so threads cannot share the work;
forked processes can. On the CPython standard library (7.2 s of CPU serially) two workers spend 8.6 s
of CPU between them plus 0.5 s in the parent, so idle cores turn into wall time (bench/README.md).
The result is identical to the serial path, which small trees, single-core machines, platforms
without a safe fork, and processes that already run other threads take.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Sequence

from .chunk import chunk_file
from .models import Chunk, SourceFile
from .skeleton import FileSymbols, extract_symbols

# Below this much text the serial path wins: forking and shipping results back cost ~0.1 s.
PARALLEL_MIN_CHARS = 4_000_000
_MAX_WORKERS = 8
_BATCHES_PER_WORKER = 6  # several batches each, so one huge file does not leave a worker idle

_files: Sequence[SourceFile] = ()  # what forked workers read: inherited, never pickled


def analyze_files(
    files: Sequence[SourceFile],
    *,
    max_tokens: int,
    min_tokens: int,
    workers: int | None = None,
    min_chars: int = PARALLEL_MIN_CHARS,
) -> tuple[list[Chunk], dict[str, FileSymbols]]:
    """(chunks of every file in file order, symbols by path), as `chunk_files` and `extract_symbols` give them."""
    count = _worker_count(files, workers, min_chars)
    if count < 2:
        results = [_analyze_one(f, max_tokens, min_tokens) for f in files]
    else:
        results = _analyze_forked(files, max_tokens, min_tokens, count)
    chunks = [c for file_chunks, _ in results for c in file_chunks]
    return chunks, {symbols.path: symbols for _, symbols in results}


def _worker_count(files: Sequence[SourceFile], workers: int | None, min_chars: int) -> int:
    if workers is None:
        workers = min(usable_cores(), _MAX_WORKERS)
    if workers < 2 or len(files) < 2 or sum(len(f.text) for f in files) < min_chars:
        return 1
    # fork() copies only the calling thread: a lock another thread holds would stay locked in the child.
    # macOS's system libraries are not fork-safe either.
    if sys.platform != "linux" or threading.active_count() > 1:
        return 1
    return workers


def usable_cores() -> int:
    """The cores this process may run on.

    All of them, busy or not, as `make -j` and repomix do: the load average is a one-minute mean that
    still counts whatever ran just before (a benchmark's previous tool, a test suite that has finished),
    and on a shared machine two runnable processes get twice the share of one.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity outside Linux
        return os.cpu_count() or 1


def _analyze_one(file: SourceFile, max_tokens: int, min_tokens: int) -> tuple[list[Chunk], FileSymbols]:
    return chunk_file(file, max_tokens=max_tokens, min_tokens=min_tokens), extract_symbols(file)


def _analyze_batch(job: tuple[list[int], int, int]) -> list[tuple[int, list[Chunk], FileSymbols]]:
    indexes, max_tokens, min_tokens = job
    return [(i, *_analyze_one(_files[i], max_tokens, min_tokens)) for i in indexes]


def _analyze_forked(files: Sequence[SourceFile], max_tokens: int, min_tokens: int,
                    workers: int) -> list[tuple[list[Chunk], FileSymbols]]:
    global _files
    # Largest files first, dealt into batches of about equal text, so the last batches are small.
    order = sorted(range(len(files)), key=lambda i: -len(files[i].text))
    target = sum(len(f.text) for f in files) / (workers * _BATCHES_PER_WORKER)
    batches: list[list[int]] = [[]]
    size = 0
    for i in order:
        if size >= target:
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += len(files[i].text)
    results: list[tuple[list[Chunk], FileSymbols] | None] = [None] * len(files)
    _files = files
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for batch in pool.imap_unordered(_analyze_batch, [(b, max_tokens, min_tokens) for b in batches]):
                for i, file_chunks, symbols in batch:
                    results[i] = (file_chunks, symbols)
    finally:
        _files = ()
    assert all(r is not None for r in results), "a worker lost a file"
    return results  # type: ignore[return-value]
