"""What runs keep per dataset beside the reply cache, and its removal once that dataset is gone.

For the next run of the same output directory a run keeps the raw logs' indexes
(`.codefactory/rawlog/<scene>-<tag>.marshal`) and the live samples' facts and MinHash signatures
(`.codefactory/quality/facts-<tag>.marshal`, `minhash-<tag>.npz`), `<tag>` standing for the directory.
Only that directory's runs read them, so once it is deleted (a temporary --out, a CI workspace, a
benchmark's scratch directory) they would stay forever: ~23 MB for a 14k-sample dataset. So each run
records which directory its tag stands for (`datasets/<tag>`), and removes the caches of every tag whose
directory is gone or that no run recorded (kept before there were records). A cache removed by mistake
only costs its recomputation.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from codefactory.fileio import atomic_write_text

TAGGED_DIRS = ("quality", "rawlog")  # under .codefactory/, where the files named by a tag are
RECORDS_DIR = "datasets"
_TAGGED_NAME = re.compile(r"^\w+-([0-9a-f]{12})\.")  # what tagged_name makes


def dataset_tag(out: Path) -> str:
    """What names one output directory's caches: a digest of its absolute path."""
    return hashlib.sha1(str(out.resolve()).encode("utf-8")).hexdigest()[:12]


def tagged_name(out: Path, name: str) -> str:
    """The file name of cache `name` ("<stem>.<suffix>") kept for output directory `out`: "<stem>-<tag>.<suffix>"."""
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{dataset_tag(out)}{dot}{suffix}"


def prune(root: Path, out: Path) -> list[Path]:
    """Record that `out` is a dataset of the repository whose `.codefactory` is `root`, and remove the caches
    of the datasets that are gone. Returns the files removed."""
    own, where = dataset_tag(out), str(out.resolve())
    records = root / RECORDS_DIR
    try:
        record = records / own
        if not record.is_file() or record.read_text(encoding="utf-8") != where:
            atomic_write_text(record, where)
        files = [f for d in TAGGED_DIRS if (root / d).is_dir() for f in (root / d).iterdir()]
        recorded = list(records.iterdir())
    except OSError:
        return []  # a read-only checkout: nothing kept, nothing to remove
    live: dict[str, bool] = {own: True}
    removed: list[Path] = []
    for file in files:
        match = _TAGGED_NAME.match(file.name)
        if match is None:
            continue
        tag = match.group(1)
        if tag not in live:
            live[tag] = _still_there(records / tag)
        if not live[tag]:
            file.unlink(missing_ok=True)
            removed.append(file)
    for record in recorded:  # and the records of datasets that are gone, with or without caches left
        if record.name.startswith("."):
            continue  # another run's record being written
        if not (live[record.name] if record.name in live else _still_there(record)):
            record.unlink(missing_ok=True)
    return removed


def _still_there(record: Path) -> bool:
    try:
        return Path(record.read_text(encoding="utf-8")).is_dir()
    except OSError:  # no record: kept before records were, or its record was lost
        return False
