"""The plain data passed between pipeline stages."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

from .fileio import EncodedJSON, json_string, json_utf8

ChunkKind = Literal["function", "method", "class", "module", "window"]
Scene = Literal["scene1", "scene2"]


@dataclass(frozen=True)
class SourceFile:
    """A file selected by the scan: its path relative to the repo root and its decoded text, secrets redacted."""

    path: str
    language: str  # "python", "go", ... or "text" for files chunked by line windows
    text: str
    blob_sha: str  # git blob id, lets later stages skip unchanged files cheaply
    secrets: tuple[tuple[str, int], ...] = ()  # (kind, count) of the secrets redacted from `text`


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str  # short human reason, e.g. "binary", "lockfile", "over size limit (2.1 MB > 1 MB)"


@dataclass(frozen=True)
class Chunk:
    """A unit of code one Scene-1 request is built from (SPEC §4)."""

    id: str  # "path::Qualified.symbol" or "path#Lstart-Lend"
    path: str
    language: str
    kind: ChunkKind
    symbol: str  # qualified symbol, "" for windows and module-level chunks
    start_line: int  # 1-based, inclusive
    end_line: int
    sha256: str  # of text
    tokens: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        # asdict() without its recursive deep copy: every field is a str or an int (0.5 s on Go's stdlib)
        return {"id": self.id, "path": self.path, "language": self.language, "kind": self.kind,
                "symbol": self.symbol, "start_line": self.start_line, "end_line": self.end_line,
                "sha256": self.sha256, "tokens": self.tokens, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Chunk":
        return cls(**data)

    @cached_property
    def json_element(self) -> EncodedJSON:
        """This chunk as an element of chunks.json's list, encoded once: by the worker that made it, which sends
        it back with the chunk, so the parent only joins the file (escaping 40 MB of text is most of writing it).

        `encode_json(self.to_dict(), depth=1)` written out as one template (tested equal): a third less time."""
        s = json_string
        return EncodedJSON(json_utf8(
            f'{{\n    "id": {s(self.id)},\n    "path": {s(self.path)},\n    "language": {s(self.language)},\n'
            f'    "kind": {s(self.kind)},\n    "symbol": {s(self.symbol)},\n    "start_line": {self.start_line},\n'
            f'    "end_line": {self.end_line},\n    "sha256": {s(self.sha256)},\n    "tokens": {self.tokens},\n'
            f'    "text": {s(self.text)}\n  }}'))


@dataclass
class Sample:
    """One generated training example with full provenance (SPEC §4 raw sample).

    `content` holds the scene's text fields: question/thinking_trace/answer for scene1,
    requirement/thinking_trace/proposal for scene2.
    """

    id: str
    scene: Scene
    content: dict[str, Any]
    source: dict[str, Any]
    generation: dict[str, Any]
    input: dict[str, Any] = field(default_factory=dict)  # what the LLM saw (redacted code), for reports and context
    quality: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id, "scene": self.scene, **self.content}
        record["source"] = self.source
        record["generation"] = self.generation
        if self.input:
            record["input"] = self.input
        if self.quality:
            record["quality"] = self.quality
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Sample":
        known = {"id", "scene", "source", "generation", "input", "quality"}
        content = {k: v for k, v in record.items() if k not in known}
        return cls(
            id=record["id"],
            scene=record["scene"],
            content=content,
            source=record["source"],
            generation=record["generation"],
            input=record.get("input", {}),
            quality=record.get("quality", {}),
        )


@dataclass(frozen=True)
class DatasetVersion:
    """One line of versions.jsonl (SPEC §5)."""

    version: int
    from_commit: str | None
    to_commit: str
    added: list[str]
    retired: list[str]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
