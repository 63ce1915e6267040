"""The Hugging Face dataset folder of `codefactory export --format hf`: Parquet files and a dataset card.

    <to>/README.md                                  YAML front matter: configs, features, splits, provenance
    <to>/data/train-00000-of-00001.parquet
    <to>/data/validation-00000-of-00001.parquet     with --split

`datasets.load_dataset("<to>")` reads it as is, and so does the Hub once the folder is pushed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from codefactory.fileio import atomic_write_text

if TYPE_CHECKING:
    from codefactory.export import Item

_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def arrow_schema(think_style: str) -> pa.Schema:
    fields = [("role", pa.string()), ("content", pa.string())]
    if think_style == "field":
        fields.append(("reasoning_content", pa.string()))  # null on system and user turns
    return pa.schema([
        ("id", pa.string()),
        ("scene", pa.string()),
        ("messages", pa.list_(pa.struct(fields))),
        ("source_files", pa.list_(pa.string())),
        ("symbol", pa.string()),
        ("start_line", pa.int32()),
        ("end_line", pa.int32()),
        ("dataset_version", pa.int32()),
    ])


def card_features(think_style: str) -> list[dict[str, Any]]:
    """`dataset_info.features` in the card's YAML, matching arrow_schema()."""
    message = [{"name": "role", "dtype": "string"}, {"name": "content", "dtype": "string"}]
    if think_style == "field":
        message.append({"name": "reasoning_content", "dtype": "string"})
    return [
        {"name": "id", "dtype": "string"},
        {"name": "scene", "dtype": "string"},
        {"name": "messages", "list": message},
        {"name": "source_files", "list": "string"},
        {"name": "symbol", "dtype": "string"},
        {"name": "start_line", "dtype": "int32"},
        {"name": "end_line", "dtype": "int32"},
        {"name": "dataset_version", "dtype": "int32"},
    ]


def row(item: "Item", think_style: str) -> dict[str, Any]:
    record = item.record
    source = record["meta"]["source"]
    messages = []
    for message in record["messages"]:
        entry = {"role": message["role"], "content": message["content"]}
        if think_style == "field":
            entry["reasoning_content"] = message.get("reasoning_content")
        messages.append(entry)
    return {"id": record["id"], "scene": item.sample.scene, "messages": messages, "source_files": item.files,
            "symbol": source.get("symbol", ""), "start_line": int(source.get("start_line", 0)),
            "end_line": int(source.get("end_line", 0)), "dataset_version": int(record["meta"]["dataset_version"])}


def write_hf_dataset(target: Path, parts: Mapping[str, Sequence["Item"]], *, manifest: Mapping[str, Any],
                     think_style: str) -> list[Path]:
    data = target / "data"
    data.mkdir(parents=True, exist_ok=True)
    for stale in data.glob("*.parquet"):  # a split from an earlier export must not be loaded with this one
        stale.unlink()
    schema = arrow_schema(think_style)
    written = []
    sizes = {}
    for name, items in parts.items():
        path = data / f"{name}-00000-of-00001.parquet"
        table = pa.Table.from_pylist([row(item, think_style) for item in items], schema=schema)
        pq.write_table(table, path)
        written.append(path)
        sizes[name] = table.nbytes
    card = target / "README.md"
    atomic_write_text(card, dataset_card(parts, manifest=manifest, think_style=think_style, sizes=sizes))
    return [card, *written]


def dataset_card(parts: Mapping[str, Sequence["Item"]], *, manifest: Mapping[str, Any], think_style: str,
                 sizes: Mapping[str, int] | None = None) -> str:
    total = sum(len(items) for items in parts.values())
    repo = manifest.get("repo", "")
    commit = manifest.get("source_commit", "")
    generator = dict(manifest.get("generator", {}))
    front = {
        "pretty_name": f"{repo} codebase SFT",
        "language": ["en"],
        "tags": ["code", "synthetic", "sft", "codefactory"],
        "task_categories": ["text-generation"],
        "size_categories": [next((label for limit, label in _SIZES if total < limit), "1M<n<10M")],
        "configs": [{"config_name": "default", "data_files": [
            {"split": name, "path": f"data/{name}-*.parquet"} for name in parts]}],
        "dataset_info": {
            "features": card_features(think_style),
            "splits": [{"name": name, "num_bytes": int((sizes or {}).get(name, 0)), "num_examples": len(items)}
                       for name, items in parts.items()],
        },
        "source": {"repository": repo, "commit": commit, "dataset_version": manifest.get("dataset_version")},
        "generator": generator,
    }
    scenes = Counter(item.sample.scene for items in parts.values() for item in items)
    split_rows = "\n".join(f"| {name} | {len(items)} | " + ", ".join(
        f"{scene} {n}" for scene, n in sorted(Counter(i.sample.scene for i in items).items())) + " |"
        for name, items in parts.items())
    prompts = ", ".join(f"{scene} `{version}`" for scene, version in generator.get("prompt_versions", {}).items())
    reasoning = {"tags": "inside `<think>…</think>` at the start of the assistant turn",
                 "field": "in the assistant turn's `reasoning_content`", "none": "left out"}[think_style]
    body = f"""# {repo} codebase SFT

Supervised fine-tuning data that teaches a model the **{repo}** codebase, generated by
codefactory from commit `{commit}` (dataset version
{manifest.get("dataset_version")}): {scenes.get("scene1", 0)} business-logic Q&A samples (Scene 1) and
{scenes.get("scene2", 0)} architectural design proposals (Scene 2), after validation, grounding checks
and deduplication.

| split | samples | by scene |
|---|---|---|
{split_rows}

Each row holds a chat in `messages` (`system`, `user`, `assistant`): TRL's conversational format. The
reasoning is {reasoning}. `source_files`, `symbol` and the line range say which code a sample was written
from; the validation split shares no source file with the training split.

Generator: {generator.get("tool", "codefactory")}, backend `{generator.get("backend", "")}`, model
`{generator.get("model", "")}`; prompt versions: {prompts}.

```python
from datasets import load_dataset
dataset = load_dataset("path/to/this/folder")  # or the Hub id once pushed
```
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body
