"""Exact and near-duplicate detection over the whole live dataset (MinHash + LSH via datasketch).

Candidates are visited best first (the caller's priority: better grounded, better judged, older),
so of two duplicates the better one is always the one kept. MinHash permutations come from a fixed
seed and shingles are hashed with sha1, so the same dataset always gives the same verdicts.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any


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


def _grams(normalised: str, size: int = SHINGLE_WORDS) -> set[str]:
    words = normalised.split()
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def text_digest(normalised: str) -> str:
    """What a kept signature is valid for: its MinHash is a function of the normalised text alone."""
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()


def deduplicate(candidates: Sequence[Candidate], threshold: float,
                signatures: MutableMapping[str, tuple[str, Any]] | None = None) -> dict[str, tuple[str, str]]:
    """{dropped id: (reason, detail)} for candidates given best first; the first of each group is kept.

    `duplicate`: the same normalised text. `near_duplicate`: word-shingle Jaccard similarity at or
    above `threshold` (LSH finds the candidates, the exact Jaccard decides). `signatures` ({id: (text
    "scheme:digest", MinHash hash values)}, kept by the caller between runs) spares hashing texts seen before;
    entries for new or changed texts are added to it.
    """
    # datasketch pulls in scipy (~0.5 s): imported only when there is something to compare.
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    dropped: dict[str, tuple[str, str]] = {}
    exact: dict[tuple[str, str], str] = {}
    indexes: dict[str, MinHashLSH] = {}
    kept_texts: dict[str, str] = {}
    grams_of: dict[str, set[str]] = {}  # shingles, made only for pairs LSH proposes
    template: MinHash | None = None

    def grams(sample_id: str, normalised: str) -> set[str]:
        if sample_id not in grams_of:
            grams_of[sample_id] = _grams(normalised)
        return grams_of[sample_id]

    for candidate in candidates:
        normalised = normalise(candidate.text)
        key = (candidate.scene, normalised)
        if key in exact:
            dropped[candidate.id] = ("duplicate", f"same text as {exact[key]}")
            continue
        exact[key] = candidate.id
        known = signatures.get(candidate.id) if signatures is not None else None
        digest = text_digest(normalised)
        scheme, _, kept_digest = known[0].partition(":") if known is not None else ("", "", "")
        if known is not None and kept_digest == digest:
            # Lean: no permutations to draw (MinHash(hashvalues=...) draws them again, ~0.2 ms each). The
            # stored values carry no scheme of their own, and datasketch insists on being told it.
            signature = LeanMinHash(seed=_SEED, hashvalues=known[1], scheme=scheme)
        else:
            # The permutations depend only on the seed: drawn once, shared by every new signature.
            template = template or MinHash(num_perm=NUM_PERM, seed=_SEED)
            signature = MinHash(num_perm=NUM_PERM, seed=_SEED, permutations=template.permutations,
                                scheme=template.scheme)
            signature.update_batch([g.encode("utf-8") for g in sorted(_grams(normalised))])
            if signatures is not None:
                signatures[candidate.id] = (f"{signature.scheme}:{digest}", signature.hashvalues)
        lsh = indexes.get(candidate.scene)
        if lsh is None:
            # LSH is only the candidate filter, set well below the threshold so pairs just above it are
            # not missed; the exact Jaccard of the shingles decides.
            lsh = indexes[candidate.scene] = MinHashLSH(threshold=min(threshold, 0.99) * LSH_RECALL, num_perm=NUM_PERM)
        best: tuple[float, str] | None = None
        for other in sorted(lsh.query(signature)):
            similarity = jaccard(grams(candidate.id, normalised), grams(other, kept_texts[other]))
            if similarity >= threshold and (best is None or similarity > best[0]):
                best = (similarity, other)
        if best is not None:
            dropped[candidate.id] = ("near_duplicate", f"{best[0]:.2f} similar to {best[1]}")
            continue
        lsh.insert(candidate.id, signature)
        kept_texts[candidate.id] = normalised
    return dropped
