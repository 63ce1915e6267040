"""The versioned dataset in the output directory (SPEC §3, §5).

Raw logs are append-only; versions.jsonl says which samples entered and left the live set
at each version; the SFT files and the manifest are rebuilt from those two, so rebuilding
them always gives byte-identical files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from codefactory.dataset_caches import tagged_name
from codefactory.fileio import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    complete_byte_lines,
    complete_lines,
    dumps_line,
    fsync_file,
    read_jsonl,
)
from codefactory.models import DatasetVersion, Sample
from codefactory.rawlog import RawLogIndex, bytes_line_id

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

    order: dict[str, None] = field(default_factory=dict)  # an ordered set: a re-added id moves to the end
    added_in: dict[str, int] = field(default_factory=dict)
    moved: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> newer provenance

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.added_in

    def ids(self) -> list[str]:
        return list(self.order)


class DatasetStore:
    def __init__(self, out: Path, *, index_dir: Path | None = None) -> None:
        """`index_dir`: where the raw logs' indexes are kept between runs (a cache outside the dataset)."""
        self.out = out
        self.index_dir = index_dir
        self._raw: dict[str, RawLogIndex] = {}

    def raw_path(self, scene: str) -> Path:
        return self.out / f"{scene}_raw.jsonl"

    @property
    def versions_path(self) -> Path:
        return self.out / "versions.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.out / "manifest.json"

    # -- raw logs -------------------------------------------------------------------------

    def append_raw(self, samples: Sequence[Sample], *, sync: bool = True) -> None:
        """Log newly generated samples; a sample id already logged is never written twice.

        With `sync=False` the lines are written but not yet fsynced: call `sync_raw()` before a version
        refers to them. (Their replies are already durable in the cache, so nothing paid for is at risk.)"""
        for scene in SCENES:
            index = self._index(scene)
            known = index.ids()
            fresh: dict[str, Sample] = {}
            for sample in samples:
                if sample.scene == scene and sample.id not in known:
                    fresh.setdefault(sample.id, sample)  # the first of one id in a batch
            if fresh:
                index.appended(*append_jsonl(self.raw_path(scene), (s.to_record() for s in fresh.values()),
                                             sync=sync))

    def sync_raw(self) -> None:
        for scene in SCENES:
            fsync_file(self.raw_path(scene))

    @contextmanager
    def appending(self, *, batch: int = 256, seconds: float = 0.5) -> Iterator[Callable[[Sequence[Sample]], None]]:
        """A function logging samples that arrive a reply at a time, in batches (`batch` samples, or what came
        in `seconds`), the rest and an fsync of the logs on the way out, whatever ended the block.

        A run killed before a batch is written loses only those lines, never their replies: the reply cache
        holds them, so the next run writes them without asking again. A write per reply, each of its system
        calls handing the GIL to the request threads and back, was a quarter of a run with a fast endpoint.
        """
        pending: list[Sample] = []
        written = time.monotonic()

        def log(samples: Sequence[Sample]) -> None:
            nonlocal written
            pending.extend(samples)
            if len(pending) >= batch or time.monotonic() - written >= seconds:
                self.append_raw(pending, sync=False)
                pending.clear()
                written = time.monotonic()

        try:
            yield log
        finally:
            self.append_raw(pending, sync=False)
            self.sync_raw()

    def read_raw(
        self, scene: str, *, ids: Collection[str] | None = None, sources: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, Sample]:
        """Logged samples of a scene, in log order. With `ids` and/or `sources`, only the samples with one of
        those ids or whose `source[key]` is one of `sources[key]` (keys: rawlog.INDEXED): only their lines
        are read, so a small update of a large dataset stays cheap."""
        if ids is None and sources is None:
            lines: Iterable[str] = complete_lines(self.raw_path(scene))
            wanted: Collection[str] = ()
        else:
            index = self._index(scene)
            wanted = ids if isinstance(ids, AbstractSet) else set(ids or ())
            lines = index.lines([*wanted, *index.find(sources or {})])
        fields = {key: set(values) for key, values in (sources or {}).items() if values}
        samples = {}
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if fields and record["id"] not in wanted:
                source = record.get("source") or {}
                if not any(source.get(key) in values for key, values in fields.items()):
                    continue  # the value was in some other field of that name, not in the provenance
            samples[record["id"]] = Sample.from_record(record)
        return samples

    def live_samples(self, ids: Collection[str] | None = None) -> list[tuple[Sample, int]]:
        """Live samples with their current provenance and the version that added each, in SFT order (scene by
        scene, in order of addition). With `ids`, only those of them: only their lines are parsed, so asking
        for the few samples a run added is cheap however large the dataset."""
        live = self.live()
        wanted = live.added_in.keys() if ids is None else live.added_in.keys() & set(ids)
        result = []
        for scene in SCENES:
            raw = self.read_raw(scene, ids=wanted)
            for sample_id in live.ids():
                sample = raw.get(sample_id)
                if sample is None:
                    continue
                if sample_id in live.moved:
                    sample.source = live.moved[sample_id]
                result.append((sample, live.added_in[sample_id]))
        return result

    def keep_indexes(self) -> None:
        """Keep the raw logs' indexes built so far in `index_dir`, for the next run."""
        for index in self._raw.values():
            index.keep()

    def raw_checksums(self, scene: str) -> Mapping[str, str]:
        """id -> checksum of the line that is its record (rawlog.RawLogIndex.checksums)."""
        return self._index(scene).checksums()

    def raw_line(self, scene: str, sample_id: str) -> str | None:
        return self._index(scene).line(sample_id)

    def _index(self, scene: str) -> RawLogIndex:
        if scene not in self._raw:
            kept = None
            if self.index_dir is not None:  # one per dataset: two --out of one repository keep their own
                kept = self.index_dir / tagged_name(self.out, f"{scene}.marshal")
            self._raw[scene] = RawLogIndex(self.raw_path(scene), kept)
        return self._raw[scene]

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
                live.order.pop(sample_id, None)
                live.moved.pop(sample_id, None)
            for sample_id in record["added"]:
                live.order.setdefault(sample_id)
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

    def rebuild(
        self, to_sft: Callable[[Sample, int], dict[str, Any] | None], manifest: dict[str, Any], *, full: bool = False
    ) -> dict[str, int]:
        """Rewrite the SFT files and manifest from raw logs + changelog. Returns live counts per scene.

        `to_sft` turns a live sample into its SFT record, or None to leave it out (failed quality checks).
        When the SFT files on disk were written at an earlier version with the same
        `manifest["sft_fingerprint"]` (everything that shapes a record besides the sample), only samples
        added, retired or moved since then are rendered again and every other line is kept as it is: the
        same bytes as a full rebuild, without parsing and re-rendering a large dataset for a small update.
        `full` renders every sample: the caller knows records changed that the changelog does not name.
        """
        records = list(read_jsonl(self.versions_path))
        live = self.live()
        changed = None if full else self._changed_since_last_rebuild(records, manifest)
        lines: dict[str, list[bytes]] = {}
        for scene in SCENES:
            path = self.out / f"{scene}_sft.jsonl"
            kept = {} if changed is None else {bytes_line_id(line): line for line in complete_byte_lines(path)}
            raw = self.read_raw(scene, ids=changed)
            lines[scene] = []
            for sample_id in live.ids():
                if changed is not None and sample_id not in changed:
                    if sample_id in kept:
                        lines[scene].append(kept[sample_id])
                    continue
                sample = raw.get(sample_id)
                if sample is None:
                    continue
                if sample_id in live.moved:
                    sample.source = live.moved[sample_id]
                record = to_sft(sample, live.added_in[sample_id])
                if record is not None:
                    lines[scene].append(dumps_line(record).encode("utf-8"))
            atomic_write_bytes(path, lines[scene])
        atomic_write_bytes(self.out / "combined_sft.jsonl", [line for s in SCENES for line in lines[s]])
        counts = {scene: len(lines[scene]) for scene in SCENES}
        atomic_write_json(self.manifest_path, {
            **manifest,
            "dataset_version": records[-1]["version"] if records else 0,
            "counts": {**counts, "total": sum(counts.values())},
        })
        return counts

    def _changed_since_last_rebuild(self, records: list[dict[str, Any]], manifest: dict[str, Any]) -> set[str] | None:
        """Ids whose SFT line may differ from the files on disk, or None when those files cannot be patched."""
        previous = self.manifest()
        fingerprint = manifest.get("sft_fingerprint")
        if not previous or fingerprint is None or previous.get("sft_fingerprint") != fingerprint:
            return None
        names = [f"{scene}_sft.jsonl" for scene in SCENES] + ["combined_sft.jsonl"]
        if not all((self.out / name).is_file() for name in names):
            return None
        written_at = previous.get("dataset_version")
        latest = records[-1]["version"] if records else 0
        if not isinstance(written_at, int) or written_at > latest:
            return None  # the changelog is not the one those files were written from
        changed: set[str] = set()
        for record in records:
            if record["version"] > written_at:
                changed.update(record["added"], record["retired"], record.get("moved", {}))
        return changed
