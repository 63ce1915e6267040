"""What quality assessment keeps per live sample between runs, so a rebuild costs what changed.

Everything here is a cache of pure functions, stored next to the reply cache (`.codefactory/quality/`, never
in the dataset): a missing, stale or damaged file only costs the time to recompute, and the SFT files are
byte-identical either way. The repository index of recent commits is kept by index_cache.py.

* Scene-1 facts (quality.Facts) are kept per sample id with the checksum of the raw-log line they were
  taken from, so a kept sample is neither parsed nor checked again while its line is the same.
* MinHash signatures (dedup.py) are kept per sample id with the digest of the normalised text they hash;
  a signature is used only while that digest matches, so only new or changed texts are hashed. With them,
  the similarity of each pair of texts LSH proposed, by the two digests: only new pairs are compared.

Both follow one dataset (`per_dataset`). Facts and index summaries are marshal files stamped with their
format and the Python version.
"""

from __future__ import annotations

import marshal
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codefactory.dataset_caches import tagged_name
from codefactory.dedup import KeptSignatures, signature_key
from codefactory.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from codefactory.snapshot import Workspace

FORMAT = 3  # bump when what a FileEntry, a summary or the facts hold changes
# The summaries and facts are plain dicts, lists and strings read on every run: marshal reads and writes them
# several times faster than json. Its bytes belong to one Python version, so the stamp names it; a file with
# another stamp, or one that does not read, is recomputed.
STAMP = f"{FORMAT}/{marshal.version}/{sys.version_info[0]}.{sys.version_info[1]}"


def quality_cache_dir(ws: "Workspace") -> Path:
    return ws.cache_dir.parent / "quality"


def read_marshal(path: Path) -> dict[str, Any]:
    data = marshal.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no mapping")
    return data


SIGNATURES_FILE = "minhash.npz"


def per_dataset(ws: "Workspace", name: str) -> Path:
    """`name` for this output directory: what is kept per live sample follows one dataset, and two datasets of
    one repository (another --out) must not evict each other's."""
    return quality_cache_dir(ws) / tagged_name(ws.out, name)


class SignatureStore:
    """MinHash hash values per sample id and text digest (dedup.py), so only new texts are hashed, and the
    similarities of the pairs LSH proposed, by their texts' digests, so only new pairs are read and compared.

    Stored as plain arrays (numpy, no pickle): ids, digests and a (samples × permutations) matrix; the
    digests of each pair and their similarities."""

    def __init__(self, ws: "Workspace") -> None:
        self.path = per_dataset(ws, SIGNATURES_FILE)
        self.entries = KeptSignatures()
        self.similarities: dict[tuple[str, str], float] = {}
        self._read: dict[str, str] = {}  # id -> digest, as loaded
        self._pairs_read = 0

    def load(self) -> KeptSignatures:
        import numpy as np  # datasketch's own dependency; loaded only when dedup runs

        try:
            with np.load(self.path, allow_pickle=False) as data:
                ids, digests = data["ids"].tolist(), data["digests"].tolist()
                self.entries = KeptSignatures(ids, digests, data["values"])
                self._read = dict(zip(ids, digests))
                pairs = data["pairs"].tolist() if "pairs" in data else []  # files kept before pairs were
                values = data["similarities"].tolist() if pairs else []
                if len(values) != len(pairs):
                    raise ValueError("pairs and similarities differ in length")
                self.similarities = dict(zip(map(tuple, pairs), values))
                self._pairs_read = len(self.similarities)
        except (OSError, ValueError, KeyError):
            self.entries, self.similarities, self._read = KeptSignatures(), {}, {}  # missing or damaged: redone
        return self.entries

    def save(self, live: Collection[str]) -> None:
        """Keep the signatures of `live` samples only, and the similarities of pairs of their texts, so the
        file follows the dataset's size."""
        import numpy as np

        kept = sorted(i for i in self.entries if i in live)
        digests = [self.entries.digest(i) for i in kept]
        live_keys = set(digests)
        pairs = sorted(pair for pair in self.similarities
                       if signature_key(pair[0]) in live_keys and signature_key(pair[1]) in live_keys)
        if len(kept) == len(self._read) and all(self._read.get(i) == d for i, d in zip(kept, digests)) \
                and len(pairs) == len(self.similarities) == self._pairs_read:
            return  # nothing new: no write (a pair is only ever added, so equal counts mean equal pairs)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
            np.savez(temp, ids=np.array(kept, dtype=str), digests=np.array(digests, dtype=str),
                     values=self.entries.matrix(kept), pairs=np.array(pairs, dtype=str).reshape(-1, 2),
                     similarities=np.array([self.similarities[p] for p in pairs], dtype=np.float64))
            os.replace(temp, self.path)
        except OSError:
            pass  # a read-only checkout: the next run hashes again


FACTS_FILE = "facts.marshal"


class FactStore:
    """Scene-1 facts (quality.Facts, as JSON rows) per sample id, with the checksum of the raw-log line they
    were taken from: a line appended later for the same id (a judge score) makes them stale."""

    def __init__(self, ws: "Workspace", key: str) -> None:
        self.path = per_dataset(ws, FACTS_FILE)
        self.key = key
        self._read: dict[str, Any] = {}

    def load(self) -> dict[str, list[Any]]:
        """{id: [line checksum, facts row]}, as read: kept entries are written back as they are."""
        try:
            data = read_marshal(self.path)
            fits = data.get("format") == STAMP and data.get("key") == self.key and isinstance(data.get("facts"), dict)
            self._read = data["facts"] if fits else {}
        except Exception:  # missing or damaged (marshal raises several kinds): taken again  # noqa: BLE001
            self._read = {}
        return self._read

    def save(self, rows: Mapping[str, list[Any]]) -> None:
        """Keep exactly `rows` (the live samples'), written only when they differ from what was read."""
        if rows.keys() == self._read.keys() and all(self._read[i] is r for i, r in rows.items()):
            return
        try:
            atomic_write_bytes(self.path, [marshal.dumps({"format": STAMP, "key": self.key, "facts": dict(rows)})],
                               durable=False)
        except OSError:
            pass  # a read-only checkout: the next run takes them again
