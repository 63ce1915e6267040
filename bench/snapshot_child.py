"""Child process of the scan benchmark: scan + chunk + skeleton of one repository, outputs written.

Run as its own process so the figure includes interpreter start and imports, as a user's
`codefactory chunk` / `skeleton` would, and so its peak memory is its own; it exits as that program
does (`cli.run`: no interpreter teardown). Prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from functools import partial
from pathlib import Path

started = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import workspace  # noqa: E402
from codefactory.cli import run  # noqa: E402
from codefactory.snapshot import take_snapshot, write_chunks, write_skeleton  # noqa: E402


def main(repo: str, out: str) -> None:
    imported = time.perf_counter()
    ws = workspace(Path(repo), "http://127.0.0.1:9/v1", Path(out))
    snapshot = take_snapshot(ws)
    snapped = time.perf_counter()
    write_chunks(ws, snapshot.chunks)
    write_skeleton(ws, snapshot.skeleton)
    done = time.perf_counter()
    print(json.dumps({
        "files": len(snapshot.scan.files), "skipped": len(snapshot.scan.skipped), "chunks": len(snapshot.chunks),
        "import_s": imported - started, "snapshot_s": snapped - imported, "write_s": done - snapped,
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "maxrss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    run(partial(main, sys.argv[1], sys.argv[2]))  # and exit as the `codefactory` program does (cli.run)
