"""`codefactory export`: the live, cleaned dataset in the formats fine-tuning tools read.

- openai: chat fine-tuning JSONL, one `{"messages": [...]}` per line (also TRL's conversational format);
- sharegpt: `{"conversations": [{"from": "system"|"human"|"gpt", "value"}]}` (Axolotl, LLaMA-Factory);
- alpaca: `{"instruction", "input", "output", "system"}` (LLaMA-Factory, Axolotl);
- hf: a Hugging Face dataset folder: Parquet files under data/ plus a README.md dataset card.

Records are rendered from the raw logs with the current `sft.*` settings (so `sft.think_style` can
differ from the SFT files'), keeping exactly the samples the quality checks keep. With a split,
samples are grouped by the source files they come from (a proposal joins all of its modules), and
whole groups go to the validation part: no file is in both parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codefactory.errors import UsageError
from codefactory.fileio import atomic_write_jsonl
from codefactory.hfcard import write_hf_dataset
from codefactory.models import Sample
from codefactory.quality import current_assessment, sft_record
from codefactory.sft import user_turn
from codefactory.store import DatasetStore

if TYPE_CHECKING:
    from codefactory.snapshot import Workspace

FORMATS = ("openai", "sharegpt", "alpaca", "hf")
SPLITS = ("train", "validation")
_SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


@dataclass
class Item:
    """One exported sample: the raw sample, its SFT record, and the files it belongs to."""

    sample: Sample
    record: dict[str, Any]

    @property
    def files(self) -> list[str]:
        source = self.record["meta"]["source"]
        return [source["path"]] if self.sample.scene == "scene1" else list(source.get("modules", []))


@dataclass
class ExportResult:
    format: str
    path: Path
    files: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # per split
    left_out: int = 0  # live samples the quality checks leave out
    warning: str | None = None


def export_dataset(ws: "Workspace", fmt: str, to: Path | None = None) -> ExportResult:
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    fraction = float(ws.config["export.split"])
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"--split must be at least 0 and below 1, got {fraction:g}")
    store = DatasetStore(ws.out)
    manifest = store.manifest()
    if manifest is None:
        raise UsageError(f"no dataset in {ws.out} yet: run `codefactory build` first")
    items, left_out = exportable(ws, store)
    if not items:
        raise UsageError(f"nothing to export: all {left_out} live samples fail the quality checks "
                         "(see `codefactory stats` or `codefactory report`)")
    train, validation, warning = split_by_file(items, fraction, seed=ws.config["seed"])
    parts = {"train": train, "validation": validation}
    target = to or ws.out / "export" / fmt
    result = ExportResult(fmt, target, left_out=left_out, warning=warning)
    result.counts = {name: len(part) for name, part in parts.items() if part}
    think_style = ws.config["sft.think_style"]
    if fmt == "hf":
        result.files = write_hf_dataset(target, {n: p for n, p in parts.items() if p}, manifest=manifest,
                                        think_style=think_style)
        return result
    convert = {"openai": to_openai, "sharegpt": to_sharegpt, "alpaca": to_alpaca}[fmt]
    target.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        path = target / f"{name}.jsonl"
        if part:
            atomic_write_jsonl(path, (convert(item, with_context=ws.config["sft.with_context"]) for item in part))
            result.files.append(path)
        else:
            path.unlink(missing_ok=True)  # a stale split from an earlier export would otherwise be loaded
    return result


def exportable(ws: "Workspace", store: DatasetStore) -> tuple[list[Item], int]:
    """Kept samples with their SFT records (current sft settings), and how many live ones were left out."""
    c = ws.config
    live = store.live_samples()
    assessment = current_assessment(ws, store, [s for s, _ in live])
    system_prompt = c["sft.system_prompt"].replace("{repo}", ws.repo.name)
    items = []
    for sample, version in live:
        record = sft_record(sample, version, assessment, system_prompt=system_prompt,
                            think_style=c["sft.think_style"], with_context=c["sft.with_context"])
        if record is not None:
            items.append(Item(sample, record))
    return items, len(live) - len(items)


def split_by_file(items: Sequence[Item], fraction: float, *, seed: int = 0) -> tuple[list[Item], list[Item], str | None]:
    """(train, validation, warning): whole groups of samples that share a source file go to one side."""
    if fraction <= 0.0 or len(items) < 2:
        return list(items), [], None
    parent: dict[str, str] = {}

    def find(path: str) -> str:
        parent.setdefault(path, path)
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for item in items:
        files = item.files or [f"#{item.sample.id}"]
        for other in files[1:]:
            a, b = find(files[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the smaller path is the root: deterministic groups
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(find((item.files or [f"#{item.sample.id}"])[0]), []).append(item)
    # A seeded hash orders the groups: the choice looks random but is the same on every export.
    order = sorted(groups, key=lambda root: hashlib.sha256(f"{seed}:{root}".encode()).hexdigest())
    target = max(1, round(fraction * len(items)))
    chosen: set[str] = set()
    taken = 0
    for root in order:  # groups that keep the validation part near its target size
        size = len(groups[root])
        if taken < target and taken + size <= max(target * 1.5, target + 1) and taken + size < len(items):
            chosen.add(root)
            taken += size
    if not chosen:  # every group is too big: the smallest one that still leaves training data
        fits = [root for root in order if len(groups[root]) < len(items)]
        if fits:
            chosen.add(min(fits, key=lambda root: len(groups[root])))
    if not chosen:
        return list(items), [], (f"no validation split: the samples' source files are all connected "
                                 f"({len(groups)} group{'s' if len(groups) != 1 else ''})")
    train = [i for i in items if find((i.files or [f"#{i.sample.id}"])[0]) not in chosen]
    validation = [i for i in items if find((i.files or [f"#{i.sample.id}"])[0]) in chosen]
    return train, validation, None


def _assistant(record: dict[str, Any]) -> dict[str, Any]:
    return record["messages"][-1]


def to_openai(item: Item, *, with_context: bool = False) -> dict[str, Any]:
    # Only `messages`: OpenAI's fine-tuning API rejects unknown top-level keys.
    return {"messages": [dict(m) for m in item.record["messages"]]}


def to_sharegpt(item: Item, *, with_context: bool = False) -> dict[str, Any]:
    record = item.record
    data: dict[str, Any] = {"id": record["id"], "conversations": [
        {"from": _SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in record["messages"]]}
    if "reasoning_content" in _assistant(record):
        data["reasoning"] = _assistant(record)["reasoning_content"]
    return data


def to_alpaca(item: Item, *, with_context: bool = False) -> dict[str, Any]:
    record, sample = item.record, item.sample
    context = ""
    if with_context and sample.scene == "scene1" and sample.input.get("code"):
        # Alpaca has a field for context: the code goes there instead of into the instruction.
        src = sample.source
        context = f"{src['path']} ({src['language']}):\n```{src['language']}\n{sample.input['code']}\n```"
    data: dict[str, Any] = {"id": record["id"], "instruction": user_turn(sample), "input": context,
                            "output": _assistant(record)["content"], "system": record["messages"][0]["content"]}
    if "reasoning_content" in _assistant(record):
        data["reasoning"] = _assistant(record)["reasoning_content"]
    return data


def describe_export(result: ExportResult) -> list[str]:
    parts = ", ".join(f"{name} {n}" for name, n in result.counts.items())
    lines = [f"exported {sum(result.counts.values())} samples ({parts}) as {result.format} -> {result.path}"]
    if result.left_out:
        lines.append(f"{result.left_out} live samples left out by the quality checks (see `codefactory stats`)")
    if result.warning:
        lines.append(f"warning: {result.warning}")
    return lines
