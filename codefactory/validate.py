"""Field checks between the raw log and the SFT files: is a sample well-formed and does it reason?

Each check returns a `(reason, detail)` pair or None. Reasons are short stable codes (counted in
summaries and reports); details say what was found, for people reading the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from codefactory.grounding import identifiers_in, words_in
from codefactory.models import Sample

Failure = tuple[str, str]

# (min words, max characters) per field: below the floor a field says nothing, above the ceiling a
# model was looping. The generation schemas bound characters too; these also hold for old raw logs.
_BOUNDS = {
    "question": (4, 500),
    "thinking_trace": (10, 4000),
    "answer": (3, 3000),
    "requirement": (8, 1200),
    "summary": (5, 1000),
}
_ITEM_BOUNDS = (2, 600)  # each Scene-2 proposal list item

# A field that is only a stand-in: the schema's own example ("..."), "N/A", "TODO", a bare type name.
_PLACEHOLDER_WHOLE = re.compile(
    r"^\W*(?:\.\.\.|…|n/?a|none|null|nil|tbd|todo|fixme|placeholder|string|text|question|answer|xxx+|-+|_+)\W*$",
    re.IGNORECASE,
)
# Stand-ins inside a longer text. Case matters for TODO/N/A: "todo list" is prose, "TODO" is a gap.
_PLACEHOLDER_INSIDE = (
    re.compile(r"lorem ipsum|dolor sit amet", re.IGNORECASE),
    re.compile(r"\b(?:TODO|TBD|FIXME)\b"),
    re.compile(r"\bN/A\b"),
    re.compile(r"[\[<{]\s*(?:insert|your|add|fill in)\b[^\]>}]{0,40}[\]>}]", re.IGNORECASE),
    re.compile(r"\byour (?:answer|question|reasoning|text) here\b", re.IGNORECASE),
    re.compile(r"(?:^|\s)(?:\.\.\.|…)(?:[^\w`]|$)"),  # a free-standing ellipsis: "Step 1: ... Step 2: ..."
)
# One pass that finds whether any of them occurs: most texts hold none, and then the patterns, tried one by
# one for the first (the reported one), need not run at all.
_ANY_PLACEHOLDER = re.compile("|".join(f"(?:{p.pattern})" for p in _PLACEHOLDER_INSIDE), re.IGNORECASE)
_REFUSAL = re.compile(
    r"\bas an ai\b|\bas a(?:n ai)? language model\b|\bI (?:cannot|can't|can not|am unable|'m unable|am not able)\b"
    r"|\bI(?:'m| am) sorry\b|\bI (?:do not|don't) have (?:access|enough|the ability)\b"
    r"|\b(?:not possible|impossible) to (?:determine|answer|tell) (?:from|without)\b"
    r"|\bwithout (?:more|additional|further) context\b",
    re.IGNORECASE,
)
# Steps: sentences, lines, list items, arrows, and clauses chained with "then"/"so"/"therefore".
_STEP_SPLIT = re.compile(
    r"(?<=[.!?;:])\s+|\n+|\s+(?:->|→|=>)\s+|,\s+(?:and\s+)?(?:then|so|therefore|thus|hence|which means)\b",
    re.IGNORECASE,
)
_PROSE_WORD = re.compile(r"[^\W\d_]{2,}[\w'’-]*")
_CODE_LINE_MIN = 20  # a copied code line this long in a question is a restatement, not a question
_FENCE = re.compile(r"```([A-Za-z0-9_+#.-]*)")

# Programming languages as a chunk's `language` names them, and the names they go by in prose.
_FAMILY = {"python": "python", "javascript": "js", "typescript": "js", "tsx": "js", "go": "go", "java": "java",
           "rust": "rust"}
_FENCE_FAMILY = {
    "python": "python", "py": "python", "python3": "python", "javascript": "js", "js": "js", "jsx": "js",
    "typescript": "js", "ts": "js", "tsx": "js", "node": "js", "go": "go", "golang": "go", "java": "java",
    "rust": "rust", "rs": "rust", "ruby": "ruby", "rb": "ruby", "php": "php", "c": "c", "cpp": "c", "c++": "c",
    "csharp": "csharp", "cs": "csharp", "c#": "csharp", "kotlin": "kotlin", "kt": "kotlin", "swift": "swift",
}
_NAMED = {
    "python": re.compile(r"\bPython\b"), "js": re.compile(r"\b(?:JavaScript|TypeScript|Node\.js)\b"),
    "go": re.compile(r"\b(?:Golang|Go (?:code|function|method|struct|package|program|module))\b"),
    "java": re.compile(r"\bJava\b(?!Script)"), "rust": re.compile(r"\bRust\b"), "ruby": re.compile(r"\bRuby\b"),
    "php": re.compile(r"\bPHP\b"), "c": re.compile(r"\bC\+\+"), "csharp": re.compile(r"\bC#"),
    "kotlin": re.compile(r"\bKotlin\b"), "swift": re.compile(r"\bSwift\b"),
}
_ANY_NAMED = re.compile("|".join(f"(?:{p.pattern})" for p in _NAMED.values()))


def text_fields(sample: Sample) -> Iterator[tuple[str, str]]:
    """(field name, text) for every text the model wrote; proposal list items are `api_changes[0]` etc."""
    content = sample.content
    if sample.scene == "scene1":
        for name in ("question", "thinking_trace", "answer"):
            yield name, _text(content.get(name))
        return
    yield "requirement", _text(content.get("requirement"))
    yield "thinking_trace", _text(content.get("thinking_trace"))
    raw = content.get("proposal")
    proposal: dict[str, Any] = raw if isinstance(raw, dict) else {}
    yield "summary", _text(proposal.get("summary"))
    for key in ("api_changes", "domain_model", "data_storage", "workflow", "risks"):
        items = proposal.get(key)
        if not isinstance(items, list) or not items:
            yield key, ""
            continue
        for index, item in enumerate(items):
            yield f"{key}[{index}]", _text(item)


def validate(sample: Sample, *, min_trace_steps: int, known: frozenset[str]) -> Failure | None:
    """The first reason this sample is unfit for training, or None. `known` holds identifiers the
    thinking trace may name (the chunk's, or for Scene-2 the project's)."""
    code = sample.input.get("code", "") if sample.scene == "scene1" else ""
    fields = list(text_fields(sample))
    for check in (_check_empty, _check_length):
        failure = check(fields)
        if failure:
            return failure
    for name, text in fields:
        failure = check_placeholder(text, code) or check_refusal(text)
        if failure:
            return failure[0], f"{name}: {failure[1]}"
    if sample.scene == "scene1":
        failure = check_restates_code(sample.content["question"], code)
        if failure:
            return failure
    trace = _text(sample.content.get("thinking_trace"))
    failure = check_trace(trace, min_steps=min_trace_steps, known=known)
    if failure:
        return failure
    if sample.scene == "scene1":
        return check_language(sample.content["question"] + "\n" + sample.content["answer"],
                              sample.source.get("language", ""), code)
    return None


def _check_empty(fields: list[tuple[str, str]]) -> Failure | None:
    for name, text in fields:
        if not text.strip():
            return "empty", f"{name} is empty"
    return None


def _check_length(fields: list[tuple[str, str]]) -> Failure | None:
    for name, text in fields:
        low, high = _BOUNDS.get(name.split("[")[0], _ITEM_BOUNDS)
        words = len(_PROSE_WORD.findall(text))  # numbers and punctuation runs are not words
        if words < low:
            return "too_short", f"{name} has {words} words (< {low})"
        if len(text) > high:
            return "too_long", f"{name} has {len(text)} characters (> {high})"
    return None


def check_placeholder(text: str, code: str = "") -> Failure | None:
    if _PLACEHOLDER_WHOLE.match(text):
        return "placeholder", repr(_clip(text))
    if not _ANY_PLACEHOLDER.search(text):  # case-blind, so it finds a superset of what the patterns find
        return None
    for pattern in _PLACEHOLDER_INSIDE:
        found = pattern.search(text)
        # A TODO or "..." that the code itself contains is being talked about, not left as a gap.
        if found and found.group(0).strip() not in code:
            return "placeholder", repr(_clip(found.group(0).strip()))
    return None


def check_refusal(text: str) -> Failure | None:
    found = _REFUSAL.search(text)
    return ("refusal", repr(found.group(0))) if found else None


def check_restates_code(question: str, code: str) -> Failure | None:
    """A question that quotes a line of the code ("What does `x = y + 1` do?") asks to read it back."""
    flat_question = " ".join(question.split())
    for line in code.splitlines():
        if len(line) < _CODE_LINE_MIN:  # its flattened form is no longer
            continue
        flat = " ".join(line.split())
        if len(flat) >= _CODE_LINE_MIN and flat in flat_question:
            return "restates_code", f"question quotes the code line {_clip(flat)!r}"
    quoted = " ".join(re.findall(r"`([^`]+)`", question))
    if len(quoted) > 0.6 * len(flat_question) and len(quoted) >= _CODE_LINE_MIN:
        return "restates_code", "question is mostly quoted code"
    return None


def reasoning_steps(text: str) -> int:
    """Steps of at least three words: sentences, lines, list items, arrows and chained clauses."""
    return sum(1 for part in _STEP_SPLIT.split(text) if part and len(words_in(part)) >= 3)


def check_trace(trace: str, *, min_steps: int, known: frozenset[str]) -> Failure | None:
    steps = reasoning_steps(trace)
    if steps < min_steps:
        return "shallow_trace", f"thinking trace has {steps} reasoning steps (< {min_steps})"
    if known and not identifiers_in(trace, loose=True) & known:
        return "trace_ignores_code", "thinking trace names none of the code's identifiers"
    return None


def check_language(text: str, language: str, code: str) -> Failure | None:
    """Code fences or language names in the answer that belong to another programming language."""
    family = _FAMILY.get(language)
    if family is None:
        return None  # prose and config chunks have no language to disagree with
    for tag in _FENCE.findall(text):
        other = _FENCE_FAMILY.get(tag.lower())
        if other and other != family:
            return "language_mismatch", f"{tag} code block for a {language} chunk"
    if not _ANY_NAMED.search(text):
        return None
    for other, pattern in _NAMED.items():
        found = pattern.search(text)
        if other != family and found and not pattern.search(code):
            return "language_mismatch", f"mentions {found.group(0)} for a {language} chunk"
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):  # a small object in a proposal list
        return "; ".join(f"{k}: {v}" for k, v in value.items()).strip()
    return "" if value is None else str(value).strip()


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
