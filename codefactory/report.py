"""`codefactory report`: one self-contained HTML page about the dataset.

The page (resources/report.html) carries its data as embedded JSON and draws its charts with its own
inline script into SVG: it loads nothing from the network and opens from disk or a CI artifact.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codefactory.errors import UsageError
from codefactory.fileio import atomic_write_text
from codefactory.models import Sample
from codefactory.quality import Assessment, current_assessment
from codefactory.sft import answer_text
from codefactory.store import SCENES, DatasetStore
from codefactory.tokens import count_tokens

if TYPE_CHECKING:
    from codefactory.snapshot import Workspace


def write_report(ws: "Workspace", to: Path | None = None) -> Path:
    store = DatasetStore(ws.out)
    if store.manifest() is None:
        raise UsageError(f"no dataset in {ws.out} yet: run `codefactory build` first")
    data = report_data(ws, store)
    path = to or ws.out / "report.html"
    atomic_write_text(path, render(data))
    return path


def render(data: dict[str, Any]) -> str:
    template = resources.files("codefactory").joinpath("resources/report.html").read_text(encoding="utf-8")
    # "<" escaped inside the JSON: sample text such as "</script>" can never end the data block.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    title = html.escape(f"{data['meta']['repo']} v{data['meta']['dataset_version']}")
    return template.replace("__TITLE__", title).replace("__DATA__", payload)


def report_data(ws: "Workspace", store: DatasetStore) -> dict[str, Any]:
    live = store.live_samples()
    assessment = current_assessment(ws, store, [s for s, _ in live])
    manifest = store.manifest() or {}
    chunks = _read_chunks(store.out)
    code: dict[str, str] = {}
    samples = [_sample_row(sample, version, assessment, code) for sample, version in live]
    snippets = {}
    for row in samples:
        for chunk_id in row.get("snippets", []):
            chunk = chunks.get(chunk_id)
            if chunk is not None and chunk_id not in snippets:
                snippets[chunk_id] = {"path": chunk["path"], "start": chunk["start_line"], "end": chunk["end_line"]}
                code[chunk_id] = chunk["text"]
    generator = manifest.get("generator", {})
    return {
        "meta": {"repo": manifest.get("repo", ws.repo.name), "source_commit": manifest.get("source_commit", ""),
                 "dataset_version": manifest.get("dataset_version", 0),
                 "generator": f"{generator.get('tool', 'codefactory')} · {generator.get('model', '')} · "
                              + ", ".join(generator.get("prompt_versions", {}).values())},
        "counts": assessment.counts(),
        "coverage": _coverage(samples, chunks),
        "versions": _versions(store),
        "samples": samples,
        "code": code,
        "snippets": snippets,
    }


def _sample_row(sample: Sample, version: int, assessment: Assessment, code: dict[str, str]) -> dict[str, Any]:
    verdict = assessment.verdicts[sample.id]
    status = "dropped" if verdict.dropped else "flagged" if verdict.flags else "kept"
    content = sample.content
    question = str(content.get("question" if sample.scene == "scene1" else "requirement", ""))
    trace = str(content.get("thinking_trace", ""))
    try:
        answer = answer_text(sample)
    except (KeyError, TypeError, AttributeError):  # a malformed proposal is shown as it was logged
        answer = json.dumps(content.get("proposal"), ensure_ascii=False)
    row: dict[str, Any] = {
        "id": sample.id, "scene": sample.scene, "version": version, "status": status,
        "reason": verdict.dropped, "detail": verdict.detail, "flags": verdict.flags, "judge": verdict.judge,
        "q": question, "t": trace, "a": answer,
        "tokens": {"q": count_tokens(question), "t": count_tokens(trace), "a": count_tokens(answer)},
    }
    src = sample.source
    if sample.scene == "scene1":
        key = src.get("chunk_sha256") or sample.id
        code.setdefault(key, sample.input.get("code", ""))  # one copy per chunk, shared by its samples
        row.update(path=src.get("path"), symbol=src.get("symbol"), start=src.get("start_line", 1),
                   end=src.get("end_line", 1), lang=src.get("language", ""), code=key)
    else:
        row.update(modules=list(src.get("modules", [])), snippets=list(src.get("snippet_chunk_ids", [])))
    return row


def _coverage(samples: list[dict[str, Any]], chunks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    kept = [s for s in samples if s["status"] != "dropped"]
    qa = [s for s in kept if s["scene"] == "scene1"]
    return {
        "files": len({s["path"] for s in qa}),
        "symbols": len({(s["path"], s["symbol"]) for s in qa if s["symbol"]}),
        "chunks": len({s["code"] for s in qa}),
        "modules": len({m for s in kept if s["scene"] == "scene2" for m in s["modules"]}),
        # Totals come from chunks.json; without it the page shows counts alone.
        "total_files": len({c["path"] for c in chunks.values()}),
        "total_symbols": len({(c["path"], c["symbol"]) for c in chunks.values() if c.get("symbol")}),
        "total_chunks": len({c["sha256"] for c in chunks.values()}),
    }


def _versions(store: DatasetStore) -> list[dict[str, Any]]:
    rows = []
    for version in store.versions():
        added = Counter("scene1" if i.startswith("s1-") else "scene2" for i in version.added)
        rows.append({"version": version.version, "to_commit": version.to_commit, "created_at": version.created_at,
                     "added": {scene: added.get(scene, 0) for scene in SCENES}, "retired": len(version.retired)})
    return rows


def _read_chunks(out: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((out / "chunks.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {c["id"]: c for c in data if isinstance(c, dict) and "id" in c} if isinstance(data, list) else {}
