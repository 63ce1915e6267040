"""Per-file work fanned out to forked worker processes, for the CPU-bound passes over a whole tree.

Redaction, parsing (tree-sitter) and tokenizing all hold the GIL, so threads cannot share them; forked
processes can. Workers inherit the caller's data through fork (nothing is pickled on the way in) and send
back only their results, batch by batch, through temporary files. Callers fall back to a plain loop, with
identical results, where forking does not pay or is not safe.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

T = TypeVar("T")

_MAX_WORKERS = 8
# A batch takes 1/_GUIDE of each worker's share of the work left, at least 1/_MAX_BATCHES_PER_WORKER of its
# whole share: each batch's results are pickled back at once, so batches are neither too many nor too few.
_GUIDE = 3
_MAX_BATCHES_PER_WORKER = 40
_ITEM_COST = 2_000  # what one item costs beyond its size, in size units (a file's parse, chunker, pickling)

_job: Callable[[int], Any] | None = None  # what forked workers run: inherited, never pickled
_handoff: str | None = None  # the directory their results are handed back through (see _run_batch)


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


@contextmanager
def paused_gc(*, kept: bool = False) -> Iterator[None]:
    """No cyclic garbage collection meanwhile: for work that makes many objects and no cycles while the process
    holds many more, which every full collection would walk. Reference counting still frees what is dropped;
    anything cyclic is collected once collection is back on.

    `kept`: what the work made lives on (a snapshot of the tree), so it is frozen out of collection (`gc.freeze`)
    when the pause ends. Otherwise the first collection after it walks every object made meanwhile: on CPython
    before 3.12 they are all still in the youngest generation (45 ms after the stdlib's snapshot). Frozen objects
    are still freed by reference counting when dropped; cyclic garbage made meanwhile would stay, and there is none.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if kept:
            gc.freeze()
        if collecting:
            gc.enable()


def fork_map(job: Callable[[int], T], sizes: Sequence[int], workers: int) -> list[T]:
    """[job(0), job(1), ...] for one index per size, computed in `workers` forked processes."""
    global _job
    batches = _batches(sizes, workers)
    results: list[Any] = [None] * len(sizes)
    done = [False] * len(sizes)
    _job = job
    # No cyclic garbage collection meanwhile, in the workers (forked with it off) nor in the parent
    # receiving their results: the jobs build millions of objects and no cycles, and each full
    # collection walks every object the process holds (7% of the stdlib's analysis; in a worker it
    # also touches, and so copies, every page it inherited). Reference counting still frees the rest.
    global _handoff
    _handoff = _handoff_directory()
    try:
        with paused_gc(), multiprocessing.get_context("fork").Pool(workers) as pool:
            for handed in pool.imap_unordered(_run_batch, batches):
                for i, result in _taken(handed):
                    results[i] = result
                    done[i] = True
    finally:
        _job = None
        if _handoff is not None:
            shutil.rmtree(_handoff, ignore_errors=True)
            _handoff = None
    assert all(done), "a worker lost an item"
    return results


def _batches(sizes: Sequence[int], workers: int) -> list[list[int]]:
    """The indexes of the items, largest first, cut into the batches the workers take one at a time."""
    # Largest items first, in batches that shrink with the work left (guided scheduling): an early
    # batch whose items cost more or less than their size says (Go's largest files are often skipped
    # at once as generated; thousands of tiny files cost more than their bytes) is made up for by
    # the smaller batches after it, and the last ones leave no worker idle for long (Go's stdlib: a
    # 1.3 s tail with equal batches).
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    left = sum(sizes) + _ITEM_COST * len(sizes)
    floor = left / (workers * _MAX_BATCHES_PER_WORKER)
    batches: list[list[int]] = []
    batch: list[int] = []
    size = 0
    for i in order:
        batch.append(i)
        size += sizes[i] + _ITEM_COST
        if size >= max(left / (workers * _GUIDE), floor):
            batches.append(batch)
            left -= size
            batch, size = [], 0
    if batch:
        batches.append(batch)
    return batches


def _handoff_directory() -> str | None:
    try:
        return tempfile.mkdtemp(prefix="codefactory-results-")
    except OSError:
        return None


def _run_batch(indexes: list[int]) -> str | list[tuple[int, Any]]:
    """A batch's results, in a file the parent takes up, or as they are when no file can be written.

    Through a file, not the pool's pipe: a worker whose results wait in the pipe (64 KB) blocks until the
    parent, unpickling another worker's batch, gets to them, and its core idles; a file's pages are written
    at once (stdlib: the snapshot 4.47 -> 4.25 s, 0.35 s less CPU; bench/README.md).
    """
    assert _job is not None
    results = [(i, _job(i)) for i in indexes]
    if _handoff is None:
        return results
    path = os.path.join(_handoff, f"{indexes[0]}.pickle")
    try:
        with open(path, "wb") as handle:
            pickle.dump(results, handle, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError:  # a full disk: through the pipe after all
        with suppress(OSError):
            os.unlink(path)
        return results
    return path


def _taken(handed: str | list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    if not isinstance(handed, str):
        return handed
    with open(handed, "rb") as handle:
        results: list[tuple[int, Any]] = pickle.load(handle)
    os.unlink(handed)
    return results
