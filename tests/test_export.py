"""Every export format loads with the `datasets` library; the split keeps each source file on one side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codefactory import pipeline
from codefactory.errors import UsageError
from codefactory.export import export_dataset
from tests.planted import billing_repo, read_jsonl, responder, workspace
from tests.servers import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"system", "user", "assistant"}


@pytest.fixture(autouse=True)
def _offline_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` must read local files only, and keep its cache out of the user's home."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


@pytest.fixture
def billing(tmp_path: Path, scripted_server: ScriptedServer) -> Path:
    root = billing_repo(tmp_path)
    responder(scripted_server)
    report = pipeline.run_build(workspace(root, scripted_server, **{"scene1.qa_count": 13, "scene2.count": 3}))
    assert not report.failed
    return root


def assert_trl_chat(rows: object) -> None:
    """TRL's conversational format: a `messages` list of {role, content} turns ending with the assistant."""
    for messages in rows:  # type: ignore[attr-defined]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in messages)


def test_every_format_loads_with_datasets_and_the_split_shares_no_file(
        billing: Path, scripted_server: ScriptedServer) -> None:
    import datasets

    ws = workspace(billing, scripted_server, **{"export.split": 0.25})
    kept = {r["id"] for r in read_jsonl(billing / "data" / "combined_sft.jsonl")}

    hf = export_dataset(ws, "hf")
    loaded = datasets.load_dataset(str(hf.path))
    assert set(loaded) == {"train", "validation"}
    assert hf.counts == {"train": loaded["train"].num_rows, "validation": loaded["validation"].num_rows}
    assert set(loaded["train"]["id"]) | set(loaded["validation"]["id"]) == kept
    assert_trl_chat(loaded["train"]["messages"])
    features = loaded["train"].features["messages"]
    assert set(getattr(features, "feature", features[0] if isinstance(features, list) else features)) == {"role", "content"}
    train_files = {f for files in loaded["train"]["source_files"] for f in files}
    validation_files = {f for files in loaded["validation"]["source_files"] for f in files}
    assert train_files and validation_files and not train_files & validation_files
    card = (hf.path / "README.md").read_text()
    front = card.split("---\n")[1]
    for needle in ("configs:", "dataset_info:", "features:", "num_examples:", "commit:", "model: scripted-model",
                   "scene1: scene1@", "repository: billing"):
        assert needle in front, needle

    openai = export_dataset(ws, "openai")
    files = {"train": str(openai.path / "train.jsonl"), "validation": str(openai.path / "validation.jsonl")}
    chat = datasets.load_dataset("json", data_files=files)
    assert chat["train"].column_names == ["messages"]
    assert_trl_chat(list(chat["train"]["messages"]) + list(chat["validation"]["messages"]))
    assert chat["train"]["messages"][0][2]["content"].startswith("<think>\n")
    assert chat["validation"].num_rows == loaded["validation"].num_rows

    sharegpt = export_dataset(ws, "sharegpt")
    share = datasets.load_dataset("json", data_files=str(sharegpt.path / "train.jsonl"))["train"]
    assert [t["from"] for t in share[0]["conversations"]] == ["system", "human", "gpt"]
    assert all(t["value"] for t in share[0]["conversations"])

    alpaca = export_dataset(ws, "alpaca")
    rows = datasets.load_dataset("json", data_files=str(alpaca.path / "train.jsonl"))["train"]
    assert {"instruction", "input", "output", "system"} <= set(rows.column_names)
    assert rows[0]["instruction"] and rows[0]["output"].startswith("<think>")


def test_think_style_and_context_follow_the_sft_settings(billing: Path, scripted_server: ScriptedServer) -> None:
    import datasets

    field = export_dataset(workspace(billing, scripted_server, **{"sft.think_style": "field"}), "openai")
    records = read_jsonl(field.path / "train.jsonl")
    assistant = records[0]["messages"][2]
    assert "<think>" not in assistant["content"] and assistant["reasoning_content"]
    assert set(records[0]) == {"messages"}
    hf = export_dataset(workspace(billing, scripted_server, **{"sft.think_style": "field"}), "hf")
    loaded = datasets.load_dataset(str(hf.path))["train"]
    assert loaded[0]["messages"][2]["reasoning_content"] and loaded[0]["messages"][0]["reasoning_content"] is None
    assert not (hf.path / "data" / "validation-00000-of-00001.parquet").exists(), "no split asked, none written"

    none = export_dataset(workspace(billing, scripted_server, **{"sft.think_style": "none", "sft.with_context": True}),
                          "alpaca")
    rows = read_jsonl(none.path / "train.jsonl")
    qa = next(r for r in rows if r["input"])
    assert "```python" in qa["input"] and "<think>" not in qa["output"] and "```" not in qa["instruction"]


def test_export_applies_the_current_quality_settings(billing: Path, scripted_server: ScriptedServer) -> None:
    strict = export_dataset(workspace(billing, scripted_server), "openai")
    lenient = export_dataset(workspace(billing, scripted_server, **{"quality.flagged": "keep"}), "openai")
    assert lenient.counts["train"] > strict.counts["train"] and lenient.left_out < strict.left_out
    everything = export_dataset(workspace(billing, scripted_server, **{"quality.enabled": False}), "openai")
    assert everything.left_out == 0


def test_split_by_file_groups_proposals_with_all_their_modules(billing: Path, scripted_server: ScriptedServer) -> None:
    from codefactory.export import exportable, split_by_file
    from codefactory.store import DatasetStore

    ws = workspace(billing, scripted_server)
    items, _ = exportable(ws, DatasetStore(ws.out))
    for fraction in (0.1, 0.3, 0.5):
        train, validation, _ = split_by_file(items, fraction, seed=0)
        assert len(train) + len(validation) == len(items) and train
        assert not {f for i in train for f in i.files} & {f for i in validation for f in i.files}
        assert split_by_file(items, fraction, seed=0)[1] == validation, "the same split on every export"


def test_cli_export_and_errors(billing: Path, tmp_path: Path) -> None:
    target = tmp_path / "exported"
    result = subprocess.run([sys.executable, "-m", "codefactory", "--repo", str(billing), "export", "--format", "hf",
                             "--to", str(target), "--split", "0.2"], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exported " in result.stderr and (target / "README.md").is_file()
    assert sorted(p.name for p in (target / "data").iterdir()) == ["train-00000-of-00001.parquet",
                                                                   "validation-00000-of-00001.parquet"]
    bad = subprocess.run([sys.executable, "-m", "codefactory", "--repo", str(billing), "export", "--format", "openai",
                          "--split", "1.5"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--split" in bad.stderr


def test_export_without_a_dataset_is_a_usage_error(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    root = billing_repo(tmp_path)
    with pytest.raises(UsageError, match="no dataset"):
        export_dataset(workspace(root, scripted_server), "openai")
    assert not (root / "data").exists()


def test_export_when_every_sample_is_dropped(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    root = billing_repo(tmp_path)
    scripted_server.responder = lambda request: {"pairs": [{"question": "What does it do here?",
                                                             "thinking_trace": "As an AI I cannot say. " * 4,
                                                             "answer": "I cannot answer this question."}]}
    report = pipeline.run_scene1(workspace(root, scripted_server, **{"scene1.qa_count": 1, "scene1.limit": 1}))
    assert report.quality["kept"] == 0 and report.quality["by_reason"] == {"refusal": 1}
    with pytest.raises(UsageError, match="nothing to export: all 1 live samples fail"):
        export_dataset(workspace(root, scripted_server), "sharegpt")
