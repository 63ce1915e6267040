"""Which live samples reach the SFT files, and why the others do not (`quality.json`).

Order of the checks, first failure wins: validation (validate.py), grounding flags (grounding.py;
dropped or kept per `quality.flagged`), judge scores below `judge.threshold` (judge.py writes them
into the raw log), then exact and near-duplicates (dedup.py) among what is left. The verdicts are a
function of the raw logs, the changelog and the repository at the source commit, so rebuilding gives
byte-identical files; `quality.json` records them for `stats`, `export` and `report`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from codefactory import __version__
from codefactory.cache import cache_key
from codefactory.dedup import Candidate, deduplicate, minhash_values, normalise, signature_key, text_digest
from codefactory.errors import ConfigError
from codefactory.fileio import atomic_write_text
from codefactory.grounding import (RepoIndex, Scene1Citations, identifiers_in, meaningful, scene1_citations,
                                   scene1_grounding, scene2_flags)
from codefactory.index_cache import repo_index_at
from codefactory.models import Sample
from codefactory.quality_cache import FactStore, SignatureStore
from codefactory.sft import to_sft
from codefactory.store import SCENES, DatasetStore, LiveSet
from codefactory.validate import text_fields, validate
from codefactory.workers import fork_map, paused_gc, worker_count

if TYPE_CHECKING:
    from codefactory.snapshot import Snapshot, Workspace

QUALITY_FILE = "quality.json"
# Below this many Scene-1 samples to check, forking workers does not pay (~0.6 ms of CPU a sample).
PARALLEL_MIN_SAMPLES = 1500


@dataclass(frozen=True)
class QualitySettings:
    enabled: bool = True
    flagged: str = "drop"  # "drop" | "keep"
    min_trace_steps: int = 3
    near_duplicate_threshold: float = 0.8
    judge_threshold: float = 3.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "QualitySettings":
        threshold = config["quality.near_duplicate_threshold"]
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"quality.near_duplicate_threshold must be in (0, 1], got {threshold}")
        return cls(enabled=config["quality.enabled"], flagged=config["quality.flagged"],
                   min_trace_steps=config["quality.min_trace_steps"], near_duplicate_threshold=threshold,
                   judge_threshold=config["judge.threshold"])

    def policy(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "flagged": self.flagged, "min_trace_steps": self.min_trace_steps,
                "near_duplicate_threshold": self.near_duplicate_threshold, "judge_threshold": self.judge_threshold}


@dataclass
class Verdict:
    id: str
    scene: str
    dropped: str | None = None  # reason code, None when the sample is kept
    detail: str = ""
    flags: dict[str, str] = field(default_factory=dict)  # grounding flag -> what was found
    grounding: float = 0.0
    judge: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"scene": self.scene, "kept": self.dropped is None}
        if self.dropped:
            data.update(reason=self.dropped, detail=self.detail)
        if self.flags:
            data["flags"] = self.flags
        data["grounding"] = self.grounding
        if self.judge is not None:
            data["judge"] = self.judge
        return data


@dataclass
class Assessment:
    verdicts: dict[str, Verdict]  # live samples, in SFT order
    settings: QualitySettings

    def kept(self, sample_id: str) -> bool:
        verdict = self.verdicts.get(sample_id)
        return verdict is None or verdict.dropped is None

    def counts(self) -> dict[str, Any]:
        verdicts = list(self.verdicts.values())
        reasons = Counter(v.dropped for v in verdicts if v.dropped)
        flags = Counter(f for v in verdicts for f in v.flags)
        flagged = sum(1 for v in verdicts if v.flags)
        per_scene = {s: {"live": sum(v.scene == s for v in verdicts),
                         "kept": sum(v.scene == s and v.dropped is None for v in verdicts)} for s in SCENES}
        return {
            "live": len(verdicts), "kept": sum(v.dropped is None for v in verdicts), "dropped": sum(reasons.values()),
            "by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            "flagged": flagged, "flag_rate": round(flagged / len(verdicts), 4) if verdicts else 0.0,
            "by_flag": dict(sorted(flags.items(), key=lambda kv: (-kv[1], kv[0]))),
            "judged": sum(v.judge is not None for v in verdicts), "per_scene": per_scene,
        }

    def changed_since(self, previous: Mapping[str, Any] | None) -> bool:
        """Whether a sample live both then and now is rendered differently (kept, dropped, flags shown)."""
        if not previous or not isinstance(previous.get("samples"), dict):
            return True
        before = previous["samples"]
        for sample_id, verdict in self.verdicts.items():
            old = before.get(sample_id)
            if old is not None and self._rendering(verdict.to_dict()) != self._rendering(old):
                return True
        return False

    def _rendering(self, verdict: Mapping[str, Any]) -> tuple[bool, tuple[str, ...]]:
        shown = tuple(sorted(verdict.get("flags", {}))) if self.settings.flagged == "keep" else ()
        return bool(verdict.get("kept", True)), shown

    def to_dict(self) -> dict[str, Any]:
        return {"tool": __version__, "policy": self.settings.policy(), "counts": self.counts(),
                "samples": {i: v.to_dict() for i, v in self.verdicts.items()}}


class Facts(NamedTuple):  # a tuple: a run rebuilds one per live sample from its kept row
    """What a Scene-1 verdict needs that no commit can change, kept per sample between runs
    (quality_cache.FactStore): its validation, what it cites, its judge score and its dedup text digest."""

    failure: tuple[str, str] | None
    citations: Scene1Citations
    judge: float | None
    digest: str
    language: str  # the source language validation saw: a move to another language asks again

    def to_row(self) -> list[Any]:
        return [self.failure, *self.citations, self.judge, self.digest, self.language]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "Facts":
        failure, lookups, paths, named, ungrounded, judge, digest, language = row
        return cls(tuple(failure) if failure else None, Scene1Citations(lookups, paths, named, ungrounded),
                   judge, digest, language)


def scene1_facts(sample: Sample, settings: QualitySettings, normalised: str | None = None) -> Facts:
    """`normalised`: normalise(dedup_text(sample)), when the caller has it already."""
    content = sample.content
    code = sample.input.get("code", "")
    code_names, known = _chunk_names(code)  # known: what the trace should name, the chunk's identifiers
    if normalised is None:
        normalised = normalise(dedup_text(sample))
    return Facts(validate(sample, min_trace_steps=settings.min_trace_steps, known=known),
                 scene1_citations(str(content.get("question", "")), str(content.get("answer", "")), code,
                                  code_names=code_names),
                 _judge_score(sample), text_digest(normalised), sample.source.get("language", ""))


@lru_cache(maxsize=256)
def _chunk_names(code: str) -> tuple[frozenset[str], frozenset[str]]:
    """The identifiers of a chunk's code, and the meaningful ones: once for the samples of one reply."""
    names = frozenset(identifiers_in(code, loose=True))
    return names, frozenset(meaningful(names))


@dataclass
class _Item:
    """One live sample on its way to a verdict: Scene-1 by its facts, Scene-2 (few, and index-bound) whole."""

    id: str
    scene: str
    text: Callable[[], str]  # the dedup text, read only when LSH pairs it
    facts: Facts | None = None
    sample: Sample | None = None

    @classmethod
    def of(cls, sample: Sample, settings: QualitySettings) -> "_Item":
        facts = scene1_facts(sample, settings) if sample.scene == "scene1" else None
        return cls(sample.id, sample.scene, lambda: dedup_text(sample), facts, None if facts else sample)


def assess(samples: Sequence[Sample], index: RepoIndex, settings: QualitySettings,
           signatures: MutableMapping[str, tuple[str, Any]] | None = None) -> Assessment:
    """Verdicts of `samples`; `signatures`: MinHash values kept between runs (see dedup.deduplicate)."""
    if not settings.enabled:
        return Assessment({s.id: Verdict(s.id, s.scene) for s in samples}, settings)
    return _decide([_Item.of(s, settings) for s in samples], index, settings, signatures)


def _decide(items: Sequence[_Item], index: RepoIndex, settings: QualitySettings,
            signatures: MutableMapping[str, tuple[str, Any]] | None,
            read: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
            similarities: MutableMapping[tuple[str, str], float] | None = None) -> Assessment:
    verdicts = {item.id: _verdict(item, index, settings) for item in items}
    order = {item.id: i for i, item in enumerate(items)}
    survivors = [item for item in items if verdicts[item.id].dropped is None]
    # Best first: better grounded, then better judged, then the older sample (stable across versions).
    survivors.sort(key=lambda i: (-verdicts[i.id].grounding, -(verdicts[i.id].judge or 0.0), order[i.id]))
    duplicates = deduplicate([Candidate(i.id, i.scene, i.text, i.facts.digest if i.facts else None)
                              for i in survivors], settings.near_duplicate_threshold, signatures, read, similarities)
    for sample_id, (reason, detail) in duplicates.items():
        verdicts[sample_id].dropped, verdicts[sample_id].detail = reason, detail
    return Assessment(verdicts, settings)


def _verdict(item: _Item, index: RepoIndex, settings: QualitySettings) -> Verdict:
    verdict = Verdict(item.id, item.scene)
    if item.facts is not None:
        flags, verdict.grounding = scene1_grounding(item.facts.citations, index)
        verdict.judge, failure = item.facts.judge, item.facts.failure
    else:
        assert item.sample is not None
        texts = [text for name, text in text_fields(item.sample) if name != "thinking_trace"]
        flags, verdict.grounding = scene2_flags(texts, item.sample.source.get("modules", []), index)
        verdict.judge = _judge_score(item.sample)
        failure = validate(item.sample, min_trace_steps=settings.min_trace_steps,
                           known=_anchor_names(item.sample, index))
    verdict.flags = dict(flags)
    if failure is None and flags and settings.flagged == "drop":
        failure = flags[0]
    if failure is None and verdict.judge is not None and verdict.judge < settings.judge_threshold:
        failure = ("judge_below_threshold", f"judge score {verdict.judge:.2f} < {settings.judge_threshold:g}")
    if failure is not None:
        verdict.dropped, verdict.detail = failure
    return verdict


def _judge_score(sample: Sample) -> float | None:
    score = (sample.quality.get("judge") or {}).get("score")
    return float(score) if isinstance(score, (int, float)) else None


def sft_record(sample: Sample, version: int, assessment: Assessment, **options: Any) -> dict[str, Any] | None:
    """The SFT record of a live sample, or None when quality checks left it out. `options` go to to_sft."""
    verdict = assessment.verdicts.get(sample.id)
    if verdict is not None and verdict.dropped:
        return None
    record = to_sft(sample, dataset_version=version, **options)
    if verdict is not None and verdict.flags:  # only kept when quality.flagged is "keep"
        record["meta"]["quality"] = {"flags": sorted(verdict.flags)}
    return record


def dedup_text(sample: Sample) -> str:
    if sample.scene == "scene1":
        return f"{sample.content.get('question', '')}\n{sample.content.get('answer', '')}"
    proposal = sample.content.get("proposal") or {}
    return f"{sample.content.get('requirement', '')}\n{proposal.get('summary', '') if isinstance(proposal, dict) else ''}"


def _anchor_names(sample: Sample, index: RepoIndex) -> frozenset[str]:
    """Names a Scene-2 thinking trace should mention: the anchor modules' symbols (Scene-1's: scene1_facts)."""
    return frozenset(meaningful(index.module_names(sample.source.get("modules", []))))


def repo_index(ws: "Workspace", commit: str, snapshot: "Snapshot | None" = None, base: str | None = None) -> RepoIndex:
    """The repository's index at `commit`: kept across runs as a per-commit summary (index_cache.py), built
    from the run's own scan, or patched from `base`'s with the files it rescanned, else from a scan of the tree."""
    return repo_index_at(ws, commit, snapshot, base)


def assess_dataset(ws: "Workspace", store: DatasetStore, commit: str, *, snapshot: "Snapshot | None" = None,
                   base: str | None = None) -> Assessment:
    """Verdicts for the live dataset at `commit`, recorded in quality.json. `snapshot`/`base`: see repo_index.

    A Scene-1 sample whose raw-log line is the one its kept facts were taken from is neither parsed nor
    checked again: its verdict is replayed against the commit's index, so a small update of a large
    dataset costs what it changed."""
    # Assessment makes a few acyclic objects per live sample while the kept index alone holds ~200k: full
    # collections walked them all, a third of a 14k-sample run.
    with paused_gc():
        return _assess_dataset(ws, store, commit, snapshot, base)


def _assess_dataset(ws: "Workspace", store: DatasetStore, commit: str, snapshot: "Snapshot | None",
                    base: str | None) -> Assessment:
    settings = QualitySettings.from_config(ws.config)
    live = store.live()
    lines = _live_lines(store, live)
    if not settings.enabled or not lines:
        assessment = Assessment({i: Verdict(i, scene) for scene, i, _ in lines}, settings)
    else:
        facts = FactStore(ws, cache_key(tool=__version__, min_trace_steps=settings.min_trace_steps))
        kept = facts.load()
        items: list[_Item] = []
        rows: dict[str, list[Any]] = {}  # id -> [line checksum, facts row], as FactStore keeps them
        fresh: list[tuple[int, str, str]] = []  # (position in items, id, checksum) of Scene-1 samples to check
        for scene, sample_id, checksum in lines:
            entry = kept.get(sample_id) if scene == "scene1" else None
            known = Facts.from_row(entry[1]) if entry is not None and entry[0] == checksum else None
            # entry is never None when known isn't: said again so that rows keeps FactStore's type
            text = partial(_text_of, store, live, scene, sample_id)
            if known is not None and entry is not None \
                    and (live.moved.get(sample_id) or {}).get("language", known.language) == known.language:
                rows[sample_id] = entry
                items.append(_Item(sample_id, scene, text, known))
            elif scene == "scene1":  # its facts are worked out below, with the other new ones at once
                fresh.append((len(items), sample_id, checksum))
                items.append(_Item(sample_id, scene, text))
            else:  # Scene-2: few, and assessed whole every run
                items.append(_Item.of(_parse(store, live, scene, sample_id), settings))
        signatures = SignatureStore(ws)
        kept_signatures = signatures.load()
        for (at, sample_id, checksum), (found, values) in zip(fresh, _scene1_facts_of(
                store, live, [i for _, i, _ in fresh], settings)):
            items[at].facts = found
            rows[sample_id] = [checksum, found.to_row()]
            kept_signatures[sample_id] = (signature_key(found.digest), values)
        assessment = _decide(items, repo_index(ws, commit, snapshot, base), settings, kept_signatures,
                             partial(_texts_of, store), signatures.similarities)
        signatures.save({item.id for item in items})
        facts.save(rows)
    # One C-encoded string, not the indented stream: quality.json is rewritten on every run.
    atomic_write_text(store.out / QUALITY_FILE, json.dumps(assessment.to_dict(), ensure_ascii=False) + "\n")
    return assessment


def _scene1_facts_of(store: DatasetStore, live: LiveSet, sample_ids: Sequence[str],
                     settings: QualitySettings) -> list[tuple[Facts, Any]]:
    """The facts and MinHash values of these Scene-1 samples, read from their raw-log lines: in worker
    processes when there are many (a first build, a lost cache), since that is CPU work for every core."""
    def one(i: int) -> tuple[Facts, Any]:
        sample = _parse(store, live, "scene1", sample_ids[i])
        normalised = normalise(dedup_text(sample))
        return scene1_facts(sample, settings, normalised), minhash_values(normalised)

    # Equal sizes keep the samples in log order within each worker's batches: the samples of one reply stay
    # together for _chunk_names' cache.
    sizes = [1] * len(sample_ids)
    workers = worker_count(sizes, None, PARALLEL_MIN_SAMPLES)
    return fork_map(one, sizes, workers) if workers > 1 else [one(i) for i in range(len(sizes))]


def _live_lines(store: DatasetStore, live: LiveSet) -> list[tuple[str, str, str]]:
    """(scene, id, checksum of its raw-log line) of the live samples in SFT order: no line is read."""
    result: list[tuple[str, str, str]] = []
    for scene in SCENES:
        checksums = store.raw_checksums(scene)
        result.extend((scene, i, checksums[i]) for i in live.ids() if i in checksums)
    return result


def _parse(store: DatasetStore, live: LiveSet, scene: str, sample_id: str) -> Sample:
    line = store.raw_line(scene, sample_id)
    assert line is not None, sample_id  # ids come from the same index
    sample = Sample.from_record(json.loads(line))
    if sample.id in live.moved:
        sample.source = live.moved[sample.id]
    return sample


def _texts_of(store: DatasetStore, ids: Sequence[str]) -> dict[str, str]:
    """The dedup texts of many samples, each raw log read once (moves do not change a dedup text)."""
    return {i: dedup_text(s) for scene in SCENES for i, s in store.read_raw(scene, ids=set(ids)).items()}


def _text_of(store: DatasetStore, live: LiveSet, scene: str, sample_id: str) -> str:
    """The dedup text of a sample known by its facts: read only when LSH pairs it with another."""
    return dedup_text(_parse(store, live, scene, sample_id))


def current_assessment(ws: "Workspace", store: DatasetStore, samples: Sequence[Sample]) -> Assessment:
    """The verdicts of the last rebuild (quality.json) when they cover `samples` under the current rules and
    settings, else assessed afresh at the manifest's source commit (nothing is written: readers such as
    export never change the dataset)."""
    settings = QualitySettings.from_config(ws.config)
    recorded = read_quality(store.out) or {}
    verdicts = recorded.get("samples")
    # Recorded verdicts hold only for the same rules (tool version) and the same settings as now.
    same_rules = recorded.get("tool") == __version__ and recorded.get("policy") == settings.policy()
    if same_rules and isinstance(verdicts, dict) and all(s.id in verdicts for s in samples):
        return Assessment({s.id: _verdict_from(s.id, verdicts[s.id]) for s in samples}, settings)
    commit = (store.manifest() or {}).get("source_commit")
    index = repo_index(ws, commit) if settings.enabled and samples and commit else RepoIndex()
    return assess(samples, index, settings)


def _verdict_from(sample_id: str, data: Mapping[str, Any]) -> Verdict:
    return Verdict(sample_id, data.get("scene", ""), None if data.get("kept", True) else data.get("reason", "dropped"),
                   data.get("detail", ""), dict(data.get("flags", {})), float(data.get("grounding", 0.0)),
                   data.get("judge"))


def read_quality(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / QUALITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_counts(counts: Mapping[str, Any]) -> list[str]:
    """Summary lines: what was kept, why the rest was dropped, how many were flagged."""
    if not counts.get("live"):
        return []
    lines = [f"quality: {counts['kept']} of {counts['live']} live samples kept, {counts['dropped']} dropped"
             + (f", {counts['judged']} judged" if counts.get("judged") else "")]
    if counts.get("by_reason"):
        lines.append("  dropped: " + ", ".join(f"{r} {n}" for r, n in counts["by_reason"].items()))
    rate = f"{100 * counts.get('flag_rate', 0.0):.1f}%"
    flags = ", ".join(f"{f} {n}" for f, n in counts.get("by_flag", {}).items())
    lines.append(f"  grounding flags: {counts.get('flagged', 0)} samples ({rate})" + (f": {flags}" if flags else ""))
    return lines
