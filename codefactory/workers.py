"""Per-file work fanned out to forked worker processes, for the CPU-bound passes over a whole tree.

Redaction, parsing (tree-sitter) and tokenizing all hold the GIL, so threads cannot share them; forked
processes can. Workers inherit the caller's data through fork (nothing is pickled on the way in) and send
back only their results, batch by batch, through temporary files. Callers fall back to a plain loop, with
identical results, where forking does not pay or is not safe.
"""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

_MAX_WORKERS = 8
# A batch takes 1/_GUIDE of each worker's share of the work left, at least 1/_MAX_BATCHES_PER_WORKER of its
# whole share: each batch's results are pickled back at once, so batches are neither too many nor too few.
_GUIDE = 3
_MAX_BATCHES_PER_WORKER = 40
_ITEM_COST = 2_000  # what one item costs beyond its size, in size units (a file's parse, chunker, pickling)
# The largest item a head start takes (size units: a file's characters): ~10 ms of work, so that stopping it
# never waits long for the item in hand.
_HEAD_START_MAX_SIZE = 50_000

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


def fork_map(job: Callable[[int], T], sizes: Sequence[int], workers: int, *,
             setup: Callable[[], None] | None = None) -> list[T]:
    """[job(0), job(1), ...] for one index per size, computed in `workers` forked processes.

    `setup` builds, before they fork, something slow to build that the workers then share (a tokenizer). It
    runs on one core; meanwhile a worker forked before it starts on the smallest items (`_HeadStart`), so
    each job must give the same result without what `setup` builds, however much slower.
    """
    global _job
    results: list[Any] = [None] * len(sizes)
    done = [False] * len(sizes)
    # No cyclic garbage collection meanwhile, in the workers (forked with it off) nor in the parent
    # receiving their results: the jobs build millions of objects and no cycles, and each full
    # collection walks every object the process holds (7% of the stdlib's analysis; in a worker it
    # also touches, and so copies, every page it inherited). Reference counting still frees the rest.
    global _handoff
    _handoff = _handoff_directory()
    early: _HeadStart | None = None
    taken: set[int] = set()
    try:
        with paused_gc():
            if setup is not None:
                if _handoff is not None:
                    early = _HeadStart(job, sizes, _handoff)
                try:
                    setup()
                finally:
                    if early is not None:
                        taken = set(early.stop())
            _job = job
            left = [i for i in range(len(sizes)) if i not in taken]
            batches = [[left[k] for k in batch] for batch in _batches([sizes[i] for i in left], workers)]
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for handed in pool.imap_unordered(_run_batch, batches):
                    for i, result in _taken(handed):
                        results[i] = result
                        done[i] = True
            for i, result in early.results() if early is not None else ():
                results[i] = result
                done[i] = True
            for i in taken:  # lost on their way back: computed here
                if not done[i]:
                    results[i] = job(i)
                    done[i] = True
    finally:
        _job = None
        if early is not None:
            early.reap()
        if _handoff is not None:
            shutil.rmtree(_handoff, ignore_errors=True)
            _handoff = None
    assert all(done), "a worker lost an item"
    return results


class _HeadStart:
    """A worker forked before the others, while the parent still builds what they share: it takes the smallest
    items, one at a time, until told to stop, then hands back those it finished.

    `stop` waits only for the item in hand (so it takes only items that finish in milliseconds) and tells how
    many it finished; their results are taken later (`results`), the pool already busy with the rest. Anything
    that goes wrong in it (it is killed, a job raises) only leaves items without results: `fork_map` computes
    them after all, and a job that raises raises again there.
    """

    def __init__(self, job: Callable[[int], Any], sizes: Sequence[int], handoff: str) -> None:
        self._stopping = mmap.mmap(-1, 1)  # shared with the child: a 1 asks it to stop
        self._path = os.path.join(handoff, "head-start.pickle")
        small = [i for i in range(len(sizes)) if sizes[i] <= _HEAD_START_MAX_SIZE]
        self.order = sorted(small, key=lambda i: sizes[i])  # smallest first
        reading, self._writing = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            os.close(reading)
            self._run(job)
        os.close(self._writing)
        self._reading = reading
        self._status: int | None = None

    def _run(self, job: Callable[[int], Any]) -> NoReturn:
        status = 1
        try:
            results = []
            for i in self.order:
                if self._stopping[0]:
                    break
                results.append((i, job(i)))
            os.write(self._writing, len(results).to_bytes(8, "little"))
            with open(self._path, "wb") as handle:
                pickle.dump(results, handle, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        finally:  # whatever happened: never back into the caller's code, no exit handlers of the parent's
            os._exit(status)

    def stop(self) -> list[int]:
        """The items it finished (it stops after the one in hand)."""
        self._stopping[0] = 1
        with os.fdopen(self._reading, "rb") as pipe:
            count = pipe.read(8)
        return self.order[: int.from_bytes(count, "little")] if len(count) == 8 else []

    def results(self) -> list[tuple[int, Any]]:
        """What `stop` said it finished, as (item, result): [] if that was lost."""
        if self.reap() != 0:
            return []
        try:
            with open(self._path, "rb") as handle:
                results: list[tuple[int, Any]] = pickle.load(handle)
            return results
        except OSError:
            return []
        finally:
            with suppress(OSError):
                os.unlink(self._path)

    def reap(self) -> int:
        """Its exit status, once it has exited."""
        if self._status is None:
            self._stopping[0] = 1
            self._status = os.waitstatus_to_exitcode(os.waitpid(self._pid, 0)[1])
        return self._status


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
