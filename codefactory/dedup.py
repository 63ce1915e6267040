"""Exact and near-duplicate detection over the whole live dataset (MinHash + LSH, as datasketch does them).

Candidates are visited best first (the caller's priority: better grounded, better judged, older),
so of two duplicates the better one is always the one kept. MinHash permutations come from a fixed
seed and shingles are hashed with sha1, so the same dataset always gives the same verdicts.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple


NUM_PERM = 128
SHINGLE_WORDS = 3
LSH_RECALL = 0.7
_SEED = 1  # fixed: verdicts must not change between rebuilds
SCHEME = "affine32"  # datasketch's permutation scheme, named so a library upgrade cannot change it silently
_NON_WORD = re.compile(r"[^\w\s]+")


class Candidate(NamedTuple):  # a tuple: a run makes one per live sample, and frozen dataclasses are slow to build
    id: str
    scene: str  # texts are only compared within a scene: a question never duplicates a design proposal
    # What makes a sample itself (question + answer, or requirement + proposal summary), or how to read it:
    # with `digest` kept from an earlier run, a text is read only when LSH pairs it with another.
    text: str | Callable[[], str]
    digest: str | None = None  # text_digest(normalise(text))


def normalise(text: str) -> str:
    """Case, punctuation, backticks, Unicode forms and spacing removed: what is left is what was said."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[str]:
    return _grams(normalise(text), size)


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _grams(normalised: str, size: int = SHINGLE_WORDS) -> set[str]:
    words = normalised.split()
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def text_digest(normalised: str) -> str:
    """What a kept signature is valid for: its MinHash is a function of the normalised text alone."""
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()


def lsh_bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH picks for this Jaccard threshold.

    The default threshold's pair is written down (tests/test_quality.py checks it against datasketch), so
    a run with no new text to hash never imports datasketch and scipy (~0.4 s)."""
    key = round(threshold, 6)
    if key not in _BANDS:
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        _BANDS[key] = (lsh.b, lsh.r)
    return _BANDS[key]


_BANDS: dict[float, tuple[int, int]] = {0.56: (21, 6)}  # 0.8 (the default) × LSH_RECALL


def deduplicate(candidates: Sequence[Candidate], threshold: float,
                signatures: MutableMapping[str, tuple[str, Any]] | None = None,
                read: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
                similarities: MutableMapping[tuple[str, str], float] | None = None) -> dict[str, tuple[str, str]]:
    """{dropped id: (reason, detail)} for candidates given best first; the first of each group is kept.

    `duplicate`: the same normalised text. `near_duplicate`: word-shingle Jaccard similarity at or
    above `threshold` (LSH finds the candidates, the exact Jaccard decides). `signatures` ({id: (text
    "scheme:digest", MinHash hash values)}, kept by the caller between runs) spares hashing texts seen before;
    entries for new or changed texts are added to it. `read(ids)`: the texts of candidates given lazily, many
    at once, used for those LSH pairs (one pass over their source instead of one read each). `similarities`
    ({(digest, digest): Jaccard similarity}, the smaller digest first, kept by the caller between runs) spares
    reading and comparing the texts of pairs compared before; the pairs compared now are added to it.
    """
    import numpy as np

    texts: dict[str, str] = {}  # normalised, read only for exact digests missing and pairs LSH proposes

    def normalised(candidate: Candidate) -> str:
        if candidate.id not in texts:
            texts[candidate.id] = normalise(candidate.text() if callable(candidate.text) else candidate.text)
        return texts[candidate.id]

    dropped: dict[str, tuple[str, str]] = {}
    exact: dict[tuple[str, str], str] = {}
    unique: list[tuple[Candidate, str]] = []
    for candidate in candidates:
        digest = candidate.digest or text_digest(normalised(candidate))
        key = (candidate.scene, digest)
        if key in exact:
            dropped[candidate.id] = ("duplicate", f"same text as {exact[key]}")
            continue
        exact[key] = candidate.id
        unique.append((candidate, digest))
    if len(unique) < 2:
        return dropped

    values = _signatures(unique, signatures, normalised)
    bands, rows = lsh_bands(min(threshold, 0.99) * LSH_RECALL)
    # LSH is only the candidate filter, set well below the threshold so pairs just above it are not missed.
    # Two texts are paired when all `rows` values of some band agree (what MinHashLSH.query finds); the bands
    # are grouped for all candidates at once, so only those sharing a band with another are visited one by one.
    scene_of = {scene: n for n, scene in enumerate(sorted({c.scene for c, _ in unique}))}
    scenes = np.array([scene_of[c.scene] for c, _ in unique], dtype=np.int64)
    groups = np.empty((len(unique), bands), dtype=np.int64)
    for band in range(bands):
        groups[:, band] = _equal_rows(values[:, band * rows:(band + 1) * rows])
    # Different scenes never pair: a scene's own offset keeps their groups apart.
    groups += (scenes * 2 * len(unique))[:, None]  # _equal_rows gives ids below 2 × rows
    shared = np.zeros(len(unique), dtype=bool)
    for band in range(bands):
        shared |= np.bincount(groups[:, band])[groups[:, band]] > 1

    paired = np.flatnonzero(shared).tolist()
    rows_of = {position: groups[position].tolist() for position in paired}
    known = similarities if similarities is not None else {}
    lazy = [unique[p][0].id for p in _texts_to_compare(paired, rows_of, unique, known)
            if callable(unique[p][0].text) and unique[p][0].id not in texts]
    if read is not None and lazy:
        texts.update((i, normalise(text)) for i, text in read(lazy).items())
    grams_of: dict[str, set[str]] = {}  # shingles, made only for pairs compared for the first time

    def similarity(a: int, b: int) -> float:
        (first, first_digest), (second, second_digest) = unique[a], unique[b]
        key = (first_digest, second_digest) if first_digest < second_digest else (second_digest, first_digest)
        if key not in known:
            known[key] = jaccard(_shingles_of(first.id, normalised(first), grams_of),
                                 _shingles_of(second.id, normalised(second), grams_of))
        return known[key]

    kept_in: list[dict[int, list[int]]] = [{} for _ in range(bands)]  # per band: group -> kept positions
    for position in paired:
        candidate = unique[position][0]
        row = rows_of[position]
        others = sorted({other for band, group in enumerate(row) for other in kept_in[band].get(group, ())},
                        key=lambda other: unique[other][0].id)
        best: tuple[float, str] | None = None
        for other in others:
            value = similarity(position, other)
            if value >= threshold and (best is None or value > best[0]):
                best = (value, unique[other][0].id)
        if best is not None:
            dropped[candidate.id] = ("near_duplicate", f"{best[0]:.2f} similar to {best[1]}")
            continue
        for band, group in enumerate(row):
            kept_in[band].setdefault(group, []).append(position)
    return dropped


def _texts_to_compare(paired: Sequence[int], rows_of: Mapping[int, list[int]],
                      unique: Sequence[tuple[Candidate, str]], known: Mapping[tuple[str, str], float]) -> list[int]:
    """The paired positions whose text is read before comparing, in one batch: the texts of no pair compared
    before, and the texts LSH pairs them with. (A pair of texts seen before whose verdict now needs their
    comparison for the first time reads them one by one: rarely more than a few.)"""
    seen = {digest for pair in known for digest in pair}
    new = [position for position in paired if unique[position][1] not in seen]
    if not new:
        return []
    groups = {(band, group) for position in new for band, group in enumerate(rows_of[position])}
    return sorted({position for position in paired
                   if any((band, group) in groups for band, group in enumerate(rows_of[position]))})


def _equal_rows(block: Any) -> Any:
    """Group ids of the rows of a (n × r) uint64 block: equal ids exactly when the rows are equal.

    Rows are hashed to one uint64 first, which sorts far faster than whole rows; only rows whose hash
    another row shares are then grouped by their bytes, so a hash collision never joins unequal rows."""
    import numpy as np

    mixed = np.zeros(len(block), dtype=np.uint64)
    for column in range(block.shape[1]):
        mixed = (mixed ^ block[:, column]) * np.uint64(0x100000001B3)  # FNV-style, wrapping mod 2^64
    _, groups, counts = np.unique(mixed, return_inverse=True, return_counts=True)
    groups = groups.astype(np.int64)
    shared = np.flatnonzero(counts[groups] > 1)
    if len(shared):
        rows = np.ascontiguousarray(block[shared])
        _, exact = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel(),
                             return_inverse=True)
        groups[shared] = len(block) + exact
    return groups


def _shingles_of(sample_id: str, normalised: str, grams_of: dict[str, set[str]]) -> set[str]:
    if sample_id not in grams_of:
        grams_of[sample_id] = _grams(normalised)
    return grams_of[sample_id]


class KeptSignatures(MutableMapping[str, tuple[str, Any]]):
    """Signatures kept between runs ({id: ("scheme:digest", hash values)}) as the rows of one matrix, plus
    the ones hashed since: a run gathers thousands of rows in one indexing step, not one by one."""

    def __init__(self, ids: Sequence[str] = (), digests: Sequence[str] = (), matrix: Any = None) -> None:
        self._rows = {i: (d, n) for n, (i, d) in enumerate(zip(ids, digests))}
        self._matrix = matrix
        self._new: dict[str, tuple[str, Any]] = {}

    def __getitem__(self, sample_id: str) -> tuple[str, Any]:
        if sample_id in self._new:
            return self._new[sample_id]
        digest, row = self._rows[sample_id]
        return digest, self._matrix[row]

    def __setitem__(self, sample_id: str, value: tuple[str, Any]) -> None:
        self._rows.pop(sample_id, None)
        self._new[sample_id] = value

    def __delitem__(self, sample_id: str) -> None:
        if self._new.pop(sample_id, None) is None:
            del self._rows[sample_id]

    def __iter__(self) -> Iterator[str]:
        yield from self._rows
        yield from self._new

    def __len__(self) -> int:
        return len(self._rows) + len(self._new)

    def digest(self, sample_id: str) -> str | None:
        found = self._new.get(sample_id) or self._rows.get(sample_id)
        return found[0] if found else None

    def matrix(self, ids: Sequence[str]) -> Any:
        """The hash values of `ids` (all kept), one row each, in that order."""
        import numpy as np

        values = np.empty((len(ids), NUM_PERM), dtype=np.uint64)
        old = [(n, self._rows[i][1]) for n, i in enumerate(ids) if i in self._rows]
        if old:
            values[[n for n, _ in old]] = self._matrix[[row for _, row in old]]
        for n, sample_id in enumerate(ids):
            if sample_id in self._new:
                values[n] = self._new[sample_id][1]
        return values

    def gather(self, wanted: Sequence[tuple[str, str]], into: Any) -> list[int]:
        """Fill `into`'s rows with the kept values of (id, "scheme:digest") pairs; the positions not kept."""
        positions, rows, missing = [], [], []
        for position, (sample_id, digest) in enumerate(wanted):
            found = self._rows.get(sample_id)
            if found is not None and found[0] == digest:
                positions.append(position)
                rows.append(found[1])
            elif sample_id in self._new and self._new[sample_id][0] == digest:
                into[position] = self._new[sample_id][1]
            else:
                missing.append(position)
        if positions:
            into[positions] = self._matrix[rows]
        return missing


def _signatures(unique: Sequence[tuple[Candidate, str]], signatures: MutableMapping[str, tuple[str, Any]] | None,
                normalised: Callable[[Candidate], str]) -> Any:
    """The (candidates × NUM_PERM) MinHash values: kept ones whose text digest still matches, else hashed."""
    import numpy as np

    values = np.empty((len(unique), NUM_PERM), dtype=np.uint64)
    if isinstance(signatures, KeptSignatures):
        missing = signatures.gather([(c.id, signature_key(d)) for c, d in unique], values)
    else:
        missing = []
        for position, (candidate, digest) in enumerate(unique):
            known = signatures.get(candidate.id) if signatures is not None else None
            if known is not None and known[0] == signature_key(digest):
                values[position] = known[1]
            else:
                missing.append(position)
    for position in missing:
        candidate, digest = unique[position]
        values[position] = minhash_values(normalised(candidate))
        if signatures is not None:
            signatures[candidate.id] = (signature_key(digest), values[position])
    return values


def signature_key(digest: str) -> str:
    """What a signature of the text with this digest is kept under: `signatures`' "scheme:digest"."""
    return f"{SCHEME}:{digest}"


def minhash_values(normalised: str) -> Any:
    """The MinHash hash values of a normalised text's word shingles, as `deduplicate` compares them.

    datasketch's MinHash(num_perm=NUM_PERM, seed=_SEED, scheme="affine32") with its default sha1_hash32,
    value for value (tests/test_quality.py checks it against datasketch): computed here with numpy alone,
    because importing datasketch imports scipy for its LSH (~0.5 s), a third of a one-file pre-push run."""
    import numpy as np

    a, b = minhash_permutations()
    hashed = np.fromiter((int.from_bytes(hashlib.sha1(g.encode("utf-8")).digest()[:4], "little")
                          for g in _grams(normalised)), dtype=np.uint32).reshape(-1, 1)
    # MurmurHash3's 32-bit finalizer, then h -> a*h + b mod 2^32 (uint32 arithmetic wraps): datasketch's affine32.
    hashed ^= hashed >> np.uint32(16)
    hashed *= np.uint32(0x85EBCA6B)
    hashed ^= hashed >> np.uint32(13)
    hashed *= np.uint32(0xC2B2AE35)
    hashed ^= hashed >> np.uint32(16)
    return (hashed * a + b).min(axis=0)


@lru_cache(maxsize=1)
def minhash_permutations() -> tuple[Any, Any]:
    """The (a, b) of every permutation, drawn as datasketch draws them for affine32 (a odd: a bijection)."""
    import numpy as np

    draw = np.random.RandomState(_SEED)
    a = draw.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = draw.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b
