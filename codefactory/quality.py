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
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codefactory import __version__
from codefactory.dedup import Candidate, deduplicate
from codefactory.errors import ConfigError
from codefactory.fileio import atomic_write_json
from codefactory.grounding import RepoIndex, identifiers_in, meaningful, scene1_flags, scene2_flags
from codefactory.models import Sample
from codefactory.quality_cache import SignatureStore, repo_index_at
from codefactory.sft import to_sft
from codefactory.store import SCENES, DatasetStore
from codefactory.validate import text_fields, validate

if TYPE_CHECKING:
    from codefactory.pipeline import Snapshot, Workspace

QUALITY_FILE = "quality.json"


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


def live_samples(store: DatasetStore) -> list[tuple[Sample, int]]:
    """Live samples with their current provenance and the version that added each, in SFT order."""
    live = store.live()
    result = []
    for scene in SCENES:
        raw = store.read_raw(scene)
        for sample_id in live.ids():
            sample = raw.get(sample_id)
            if sample is None:
                continue
            if sample_id in live.moved:
                sample.source = live.moved[sample_id]
            result.append((sample, live.added_in[sample_id]))
    return result


def assess(samples: Sequence[Sample], index: RepoIndex, settings: QualitySettings,
           signatures: MutableMapping[str, tuple[str, Any]] | None = None) -> Assessment:
    """Verdicts of `samples`; `signatures`: MinHash values kept between runs (see dedup.deduplicate)."""
    verdicts = {s.id: Verdict(s.id, s.scene) for s in samples}
    if not settings.enabled:
        return Assessment(verdicts, settings)
    for sample in samples:
        verdict = verdicts[sample.id]
        flags, verdict.grounding = _grounding(sample, index)
        verdict.flags = dict(flags)
        score = (sample.quality.get("judge") or {}).get("score")
        verdict.judge = float(score) if isinstance(score, (int, float)) else None
        failure = validate(sample, min_trace_steps=settings.min_trace_steps, known=_known_names(sample, index))
        if failure is None and flags and settings.flagged == "drop":
            failure = flags[0]
        if failure is None and verdict.judge is not None and verdict.judge < settings.judge_threshold:
            failure = ("judge_below_threshold", f"judge score {verdict.judge:.2f} < {settings.judge_threshold:g}")
        if failure is not None:
            verdict.dropped, verdict.detail = failure
    order = {s.id: i for i, s in enumerate(samples)}
    survivors = [s for s in samples if verdicts[s.id].dropped is None]
    # Best first: better grounded, then better judged, then the older sample (stable across versions).
    survivors.sort(key=lambda s: (-verdicts[s.id].grounding, -(verdicts[s.id].judge or 0.0), order[s.id]))
    duplicates = deduplicate([Candidate(s.id, s.scene, dedup_text(s)) for s in survivors],
                             settings.near_duplicate_threshold, signatures)
    for sample_id, (reason, detail) in duplicates.items():
        verdicts[sample_id].dropped, verdicts[sample_id].detail = reason, detail
    return Assessment(verdicts, settings)


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


def _grounding(sample: Sample, index: RepoIndex) -> tuple[list[tuple[str, str]], float]:
    if sample.scene == "scene1":
        return scene1_flags(str(sample.content.get("question", "")), str(sample.content.get("answer", "")),
                            sample.input.get("code", ""), index)
    texts = [text for name, text in text_fields(sample) if name != "thinking_trace"]
    return scene2_flags(texts, sample.source.get("modules", []), index)


def _known_names(sample: Sample, index: RepoIndex) -> frozenset[str]:
    """Names a thinking trace should mention: the chunk's identifiers, or the anchor modules' symbols."""
    if sample.scene == "scene1":
        return frozenset(meaningful(identifiers_in(sample.input.get("code", ""), loose=True)))
    return frozenset(meaningful(index.module_names(sample.source.get("modules", []))))


def repo_index(ws: "Workspace", commit: str, snapshot: "Snapshot | None" = None, base: str | None = None) -> RepoIndex:
    """The repository's index at `commit`: kept per file across runs (quality_cache.py), built from the run's
    own scan when it has one, else from a scan of the tree."""
    return repo_index_at(ws, commit, snapshot, base)


def assess_dataset(ws: "Workspace", store: DatasetStore, commit: str, *, snapshot: "Snapshot | None" = None,
                   base: str | None = None) -> Assessment:
    """Verdicts for the live dataset at `commit`, recorded in quality.json. `snapshot`/`base`: see repo_index."""
    settings = QualitySettings.from_config(ws.config)
    samples = [s for s, _ in live_samples(store)]
    index = repo_index(ws, commit, snapshot, base) if settings.enabled and samples else RepoIndex()
    signatures = SignatureStore(ws)
    assessment = assess(samples, index, settings, signatures.load() if settings.enabled and samples else None)
    if settings.enabled and samples:
        signatures.save({s.id for s in samples})
    atomic_write_json(store.out / QUALITY_FILE, assessment.to_dict())
    return assessment


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
