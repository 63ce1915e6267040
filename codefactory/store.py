"""The versioned dataset in the output directory (SPEC §3, §5).

Raw logs are append-only; versions.jsonl says which samples entered and left the live set
at each version; the SFT files and the manifest are rebuilt from those two, so rebuilding
them always gives byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from codefactory.fileio import append_jsonl, atomic_write_json, atomic_write_jsonl, read_jsonl
from codefactory.models import DatasetVersion, Sample

SCENES = ("scene1", "scene2")

# Pending work per scene: Scene-1 entries are {"id", "path"} of a chunk, Scene-2 entries an anchor
# {"index", "theme", "modules"}; an entry is identified by its chunk id or proposal index.
Pending = dict[str, list[dict[str, Any]]]
_PENDING_KEY = {"scene1": "id", "scene2": "index"}


def next_pending(carry: Pending, undone: Pending, done: Pending) -> Pending:
    """What stays pending after a run: `carry` without what the run did, plus what it left undone."""
    result: Pending = {}
    for scene in SCENES:
        key = _PENDING_KEY[scene]
        finished = {entry[key] for entry in done.get(scene, [])}
        merged: dict[Any, dict[str, Any]] = {}
        for entry in [*carry.get(scene, []), *undone.get(scene, [])]:
            if entry[key] not in finished:
                merged[entry[key]] = entry
        result[scene] = [merged[k] for k in sorted(merged)]
    return result


@dataclass
class LiveSet:
    """The replayed changelog: live sample ids in order of addition, and the version that added each."""

    order: list[str] = field(default_factory=list)
    added_in: dict[str, int] = field(default_factory=dict)
    moved: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> newer provenance

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.added_in

    def ids(self) -> list[str]:
        return [i for i in self.order if i in self.added_in]


class DatasetStore:
    def __init__(self, out: Path) -> None:
        self.out = out
        self._raw_ids: dict[str, set[str]] = {}

    def raw_path(self, scene: str) -> Path:
        return self.out / f"{scene}_raw.jsonl"

    @property
    def versions_path(self) -> Path:
        return self.out / "versions.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.out / "manifest.json"

    # -- raw logs -------------------------------------------------------------------------

    def append_raw(self, samples: Sequence[Sample]) -> None:
        """Log newly generated samples; a sample id already logged is never written twice."""
        for scene in SCENES:
            known = self._known_ids(scene)
            fresh = [s for s in samples if s.scene == scene and s.id not in known]
            if fresh:
                append_jsonl(self.raw_path(scene), (s.to_record() for s in fresh))
                known.update(s.id for s in fresh)

    def read_raw(self, scene: str) -> dict[str, Sample]:
        return {r["id"]: Sample.from_record(r) for r in read_jsonl(self.raw_path(scene))}

    def _known_ids(self, scene: str) -> set[str]:
        if scene not in self._raw_ids:
            self._raw_ids[scene] = {r["id"] for r in read_jsonl(self.raw_path(scene))}
        return self._raw_ids[scene]

    # -- versions -------------------------------------------------------------------------

    def versions(self) -> list[DatasetVersion]:
        return [
            DatasetVersion(**{k: r[k] for k in ("version", "from_commit", "to_commit", "added", "retired", "created_at")})
            for r in read_jsonl(self.versions_path)
        ]

    def live(self) -> LiveSet:
        live = LiveSet()
        for record in read_jsonl(self.versions_path):
            for sample_id in record["retired"]:
                live.added_in.pop(sample_id, None)
                live.moved.pop(sample_id, None)
            for sample_id in record["added"]:
                if sample_id not in live.added_in:
                    live.order.append(sample_id)
                live.added_in[sample_id] = record["version"]
            live.moved.update(record.get("moved", {}))
        return live

    # -- pending work ----------------------------------------------------------------------

    @property
    def pending_path(self) -> Path:
        return self.out / "pending.json"

    def pending(self) -> Pending:
        """Work planned but not done (deferred by a cap, or failed); the next incremental run picks it up."""
        try:
            data = json.loads(self.pending_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        return {scene: list(data.get(scene, [])) for scene in SCENES}

    def write_pending(self, pending: Pending) -> None:
        if any(pending.get(scene) for scene in SCENES):
            atomic_write_json(self.pending_path, {scene: pending.get(scene, []) for scene in SCENES})
        else:
            self.pending_path.unlink(missing_ok=True)

    def manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def commit_version(
        self,
        *,
        from_commit: str | None,
        to_commit: str,
        added: Iterable[str],
        retired: Iterable[str],
        moved: dict[str, dict[str, Any]] | None = None,
    ) -> DatasetVersion | None:
        """Append one changelog line if the live set changes; None when there is nothing to record."""
        live = self.live()
        added_ids = [i for i in dict.fromkeys(added) if i not in live]
        retired_ids = [i for i in dict.fromkeys(retired) if i in live]
        moved = {i: src for i, src in (moved or {}).items() if i in live and i not in retired_ids}
        if not added_ids and not retired_ids and not moved:
            return None
        previous = self.versions()
        version = DatasetVersion(
            version=(previous[-1].version if previous else 0) + 1,
            from_commit=from_commit,
            to_commit=to_commit,
            added=added_ids,
            retired=retired_ids,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        record = version.to_dict()
        if moved:
            record["moved"] = moved
        append_jsonl(self.versions_path, [record])
        return version

    # -- derived files --------------------------------------------------------------------

    def rebuild(self, to_sft: Callable[[Sample, int], dict[str, Any] | None], manifest: dict[str, Any]) -> dict[str, int]:
        """Rewrite the SFT files and manifest from raw logs + changelog. Returns live counts per scene.

        `to_sft` turns a live sample into its SFT record, or None to leave it out (failed quality checks).
        """
        live = self.live()
        per_scene: dict[str, list[dict[str, Any]]] = {}
        for scene in SCENES:
            raw = self.read_raw(scene)
            records = []
            for sample_id in live.ids():
                sample = raw.get(sample_id)
                if sample is None:
                    continue
                if sample_id in live.moved:
                    sample.source = live.moved[sample_id]
                record = to_sft(sample, live.added_in[sample_id])
                if record is not None:
                    records.append(record)
            per_scene[scene] = records
            atomic_write_jsonl(self.out / f"{scene}_sft.jsonl", records)
        atomic_write_jsonl(self.out / "combined_sft.jsonl", [r for s in SCENES for r in per_scene[s]])
        counts = {scene: len(per_scene[scene]) for scene in SCENES}
        versions = self.versions()
        atomic_write_json(self.manifest_path, {
            **manifest,
            "dataset_version": versions[-1].version if versions else 0,
            "counts": {**counts, "total": sum(counts.values())},
        })
        return counts
