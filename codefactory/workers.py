"""Per-file work fanned out to forked worker processes, for the CPU-bound passes over a whole tree.

Redaction, parsing (tree-sitter) and tokenizing (bpe-openai) all hold the GIL, so threads cannot share
them; forked processes can. Workers inherit the caller's data through fork (nothing is pickled on the
way in) and send back only their results. Callers fall back to a plain loop, with identical results,
where forking does not pay or is not safe.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_MAX_WORKERS = 8
_BATCHES_PER_WORKER = 6  # several batches each, so one huge item does not leave a worker idle

_job: Callable[[int], Any] | None = None  # what forked workers run: inherited, never pickled


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


def worker_count(sizes: Sequence[int], workers: int | None, min_size: int) -> int:
    """How many processes to fork for items of these sizes; 1 means: run the plain loop."""
    if workers is None:
        workers = min(usable_cores(), _MAX_WORKERS)
    if workers < 2 or len(sizes) < 2 or sum(sizes) < min_size:
        return 1
    # fork() copies only the calling thread: a lock another thread holds would stay locked in the child.
    # macOS's system libraries are not fork-safe either.
    if sys.platform != "linux" or threading.active_count() > 1:
        return 1
    return workers


def fork_map(job: Callable[[int], T], sizes: Sequence[int], workers: int) -> list[T]:
    """[job(0), job(1), ...] for one index per size, computed in `workers` forked processes."""
    global _job
    # Largest items first, dealt into batches of about equal size, so the last batches are small.
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    target = sum(sizes) / (workers * _BATCHES_PER_WORKER)
    batches: list[list[int]] = [[]]
    size = 0
    for i in order:
        if size >= target:
            batches.append([])
            size = 0
        batches[-1].append(i)
        size += sizes[i]
    results: list[Any] = [None] * len(sizes)
    done = [False] * len(sizes)
    _job = job
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for batch in pool.imap_unordered(_run_batch, batches):
                for i, result in batch:
                    results[i] = result
                    done[i] = True
    finally:
        _job = None
    assert all(done), "a worker lost an item"
    return results


def _run_batch(indexes: list[int]) -> list[tuple[int, Any]]:
    assert _job is not None
    return [(i, _job(i)) for i in indexes]
