"""Raw samples to chat-format SFT records (SPEC §4 SFT sample)."""

from __future__ import annotations

from typing import Any

from codefactory.models import Sample

_PROPOSAL_SECTIONS = (
    ("api_changes", "API changes"),
    ("domain_model", "Domain model"),
    ("data_storage", "Data storage"),
    ("workflow", "Workflow"),
    ("risks", "Risks"),
)


def user_turn(sample: Sample, *, with_context: bool = False) -> str:
    if sample.scene == "scene1":
        question = sample.content["question"]
        code = sample.input.get("code") if with_context else None
        if code:
            src = sample.source
            return f"{src['path']} ({src['language']}):\n```{src['language']}\n{code}\n```\n\n{question}"
        return question
    return sample.content["requirement"]


def answer_text(sample: Sample) -> str:
    if sample.scene == "scene1":
        return sample.content["answer"]
    return render_proposal(sample.content["proposal"])


def render_proposal(proposal: dict[str, Any]) -> str:
    parts = [f"## Summary\n{proposal['summary'].strip()}"]
    for key, title in _PROPOSAL_SECTIONS:
        items = proposal.get(key) or []
        lines = "\n".join(f"- {_item_text(item)}" for item in items)
        parts.append(f"## {title}\n{lines}")
    return "\n\n".join(parts)


def to_sft(
    sample: Sample,
    *,
    dataset_version: int,
    system_prompt: str,
    think_style: str = "tags",
    with_context: bool = False,
) -> dict[str, Any]:
    trace = sample.content["thinking_trace"].strip()
    answer = answer_text(sample).strip()
    assistant: dict[str, Any] = {"role": "assistant"}
    if think_style == "tags":
        assistant["content"] = f"<think>\n{trace}\n</think>\n\n{answer}"
    elif think_style == "field":
        assistant["content"] = answer
        assistant["reasoning_content"] = trace
    else:
        assistant["content"] = answer
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_turn(sample, with_context=with_context)},
        assistant,
    ]
    meta = {"scene": sample.scene, "source": sample.source, "dataset_version": dataset_version}
    return {"id": sample.id, "messages": messages, "meta": meta}


def _item_text(item: Any) -> str:
    if isinstance(item, dict):
        return "; ".join(f"{k}: {v}" for k, v in item.items())
    return str(item).strip()
