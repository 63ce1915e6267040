"""Exact and near-duplicate detection over the whole live dataset (MinHash + LSH via datasketch).

Candidates are visited best first (the caller's priority: better grounded, better judged, older),
so of two duplicates the better one is always the one kept. MinHash permutations come from a fixed
seed and shingles are hashed with sha1, so the same dataset always gives the same verdicts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


NUM_PERM = 128
SHINGLE_WORDS = 3
LSH_RECALL = 0.7
_SEED = 1  # fixed: verdicts must not change between rebuilds
_NON_WORD = re.compile(r"[^\w\s]+")


@dataclass(frozen=True)
class Candidate:
    id: str
    scene: str  # texts are only compared within a scene: a question never duplicates a design proposal
    text: str  # what makes a sample itself: question + answer, or requirement + proposal summary


def normalise(text: str) -> str:
    """Case, punctuation, backticks, Unicode forms and spacing removed: what is left is what was said."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[str]:
    words = normalise(text).split()
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def deduplicate(candidates: Sequence[Candidate], threshold: float) -> dict[str, tuple[str, str]]:
    """{dropped id: (reason, detail)} for candidates given best first; the first of each group is kept.

    `duplicate`: the same normalised text. `near_duplicate`: word-shingle Jaccard similarity at or
    above `threshold` (LSH finds the candidates, the exact Jaccard decides).
    """
    # datasketch pulls in scipy (~0.5 s): imported only when there is something to compare.
    from datasketch import MinHash, MinHashLSH

    dropped: dict[str, tuple[str, str]] = {}
    exact: dict[tuple[str, str], str] = {}
    indexes: dict[str, MinHashLSH] = {}
    kept_shingles: dict[str, set[str]] = {}
    for candidate in candidates:
        key = (candidate.scene, normalise(candidate.text))
        if key in exact:
            dropped[candidate.id] = ("duplicate", f"same text as {exact[key]}")
            continue
        exact[key] = candidate.id
        grams = shingles(candidate.text)
        signature = MinHash(num_perm=NUM_PERM, seed=_SEED)
        signature.update_batch([g.encode("utf-8") for g in sorted(grams)])
        lsh = indexes.get(candidate.scene)
        if lsh is None:
            # LSH is only the candidate filter, set well below the threshold so pairs just above it are
            # not missed; the exact Jaccard of the shingles decides.
            lsh = indexes[candidate.scene] = MinHashLSH(threshold=min(threshold, 0.99) * LSH_RECALL, num_perm=NUM_PERM)
        best: tuple[float, str] | None = None
        for other in sorted(lsh.query(signature)):
            similarity = jaccard(grams, kept_shingles[other])
            if similarity >= threshold and (best is None or similarity > best[0]):
                best = (similarity, other)
        if best is not None:
            dropped[candidate.id] = ("near_duplicate", f"{best[0]:.2f} similar to {best[1]}")
            continue
        lsh.insert(candidate.id, signature)
        kept_shingles[candidate.id] = grams
    return dropped
