"""Scene-1 and Scene-2 end to end against a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codefactory import pipeline
from codefactory.config import load_config
from codefactory.gitrepo import GitRepo
from tests.gitrepos import make_repo
from tests.servers import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent

ORDERS = '''"""Order handling for the shop."""

from dataclasses import dataclass, field

TAX_RATE = 0.2


class EmptyCartError(Exception):
    """Raised when an order is placed with no items."""


@dataclass
class Order:
    customer_id: str
    items: list[tuple[str, int, float]] = field(default_factory=list)
    status: str = "new"

    def total(self) -> float:
        """Sum of line prices including tax."""
        subtotal = sum(quantity * price for _, quantity, price in self.items)
        return round(subtotal * (1 + TAX_RATE), 2)


class OrderService:
    """Places and cancels orders, keeping stock in sync."""

    def __init__(self, inventory, payments):
        self.inventory = inventory
        self.payments = payments

    def place(self, order: Order) -> Order:
        """Reserve stock, charge the customer, then confirm the order."""
        if not order.items:
            raise EmptyCartError(order.customer_id)
        for sku, quantity, _ in order.items:
            self.inventory.reserve(sku, quantity)
        self.payments.charge(order.customer_id, order.total())
        order.status = "confirmed"
        return order

    def cancel(self, order: Order) -> Order:
        """Release reserved stock and refund when the order was confirmed."""
        if order.status == "confirmed":
            self.payments.refund(order.customer_id, order.total())
        for sku, quantity, _ in order.items:
            self.inventory.release(sku, quantity)
        order.status = "cancelled"
        return order
'''

INVENTORY = '''"""Stock levels per SKU."""


class OutOfStock(Exception):
    pass


class Inventory:
    def __init__(self):
        self.levels: dict[str, int] = {}

    def reserve(self, sku: str, quantity: int) -> None:
        """Take quantity units of sku out of stock, or fail without changing anything."""
        available = self.levels.get(sku, 0)
        if available < quantity:
            raise OutOfStock(f"{sku}: {available} < {quantity}")
        self.levels[sku] = available - quantity

    def release(self, sku: str, quantity: int) -> None:
        self.levels[sku] = self.levels.get(sku, 0) + quantity
'''

FILES = {
    "shop/orders.py": ORDERS,
    "shop/inventory.py": INVENTORY,
    "shop/__init__.py": "from shop.orders import OrderService\nfrom shop.inventory import Inventory\n",
    "README.md": "# shop\n\nA tiny shop backend used in tests.\n",
}


def workspace(repo_path: Path, server: ScriptedServer | None, **flags: object) -> pipeline.Workspace:
    base = {"base_url": server.base_url if server else "http://127.0.0.1:9/v1", "out": str(repo_path / "data")}
    config = load_config(repo_path, flags={**base, **flags}, environ={})
    return pipeline.Workspace(repo=GitRepo(repo_path), config=config, progress=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    make_repo(tmp_path / "shop", FILES)
    return tmp_path / "shop"


def test_scene1_end_to_end_and_second_run_is_free(shop: Path, scripted_server: ScriptedServer) -> None:
    ws = workspace(shop, scripted_server, **{"scene1.limit": 3, "scene1.qa_count": 2})
    report = pipeline.run_scene1(ws)
    assert not report.failed
    assert len(scripted_server.chat_requests) == 3
    raw = read_jsonl(shop / "data" / "scene1_raw.jsonl")
    assert len(raw) == 6
    head = GitRepo(shop).head_commit()
    for record in raw:
        assert record["id"].startswith("s1-") and len(record["id"]) == 19
        assert {"question", "thinking_trace", "answer"} <= record.keys()
        source = record["source"]
        assert source["commit"] == head and source["repo"] == "shop"
        assert source["chunk_id"].startswith(source["path"])
        assert source["start_line"] <= source["end_line"]
        assert record["generation"]["prompt_version"].startswith("scene1@")
        assert record["generation"]["cache_key"] and record["generation"]["model"] == "scripted-model"
    sft = read_jsonl(shop / "data" / "scene1_sft.jsonl")
    # The raw log is in order of arrival; the SFT file in order of the requests, however replies arrived.
    assert sorted(r["id"] for r in sft) == sorted(r["id"] for r in raw)
    roles = [m["role"] for m in sft[0]["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert sft[0]["messages"][2]["content"].startswith("<think>\n")
    assert sft[0]["meta"]["dataset_version"] == 1
    manifest = json.loads((shop / "data" / "manifest.json").read_text())
    assert manifest["dataset_version"] == 1 and manifest["source_commit"] == head
    assert manifest["counts"] == {"scene1": 6, "scene2": 0, "total": 6}
    chunks = json.loads((shop / "data" / "chunks.json").read_text())
    assert {c["id"] for c in chunks} >= {r["source"]["chunk_id"] for r in raw}

    before = {p.name: p.read_bytes() for p in (shop / "data").iterdir() if p.name != "manifest.json"}
    again = pipeline.run_scene1(workspace(shop, scripted_server, **{"scene1.limit": 3, "scene1.qa_count": 2}))
    assert len(scripted_server.chat_requests) == 3, "a second identical run must make no LLM call"
    assert again.stats.cache_hits == 3 and again.version is None
    after = {p.name: p.read_bytes() for p in (shop / "data").iterdir() if p.name != "manifest.json"}
    assert after == before


def test_scene2_end_to_end(shop: Path, scripted_server: ScriptedServer) -> None:
    report = pipeline.run_scene2(workspace(shop, scripted_server, **{"scene2.count": 2}))
    assert not report.failed and report.samples == 2
    raw = read_jsonl(shop / "data" / "scene2_raw.jsonl")
    assert len({r["id"] for r in raw}) == 2
    for record in raw:
        assert record["requirement"] and record["thinking_trace"]
        assert set(record["proposal"]) == {"summary", "api_changes", "domain_model", "data_storage", "workflow", "risks"}
        assert record["source"]["modules"] and len(record["source"]["skeleton_sha256"]) == 64
        assert record["generation"]["prompt_version"].startswith("scene2@")
    sft = read_jsonl(shop / "data" / "scene2_sft.jsonl")
    assert "## API changes" in sft[0]["messages"][2]["content"]
    assert (shop / "data" / "project_skeleton.txt").read_text().strip()
    assert json.loads((shop / "data" / "project_skeleton.json").read_text())


def test_dry_run_sends_nothing_and_writes_requests(shop: Path, scripted_server: ScriptedServer) -> None:
    report = pipeline.run_scene1(workspace(shop, scripted_server, **{"scene1.limit": 2}), dry_run=True)
    assert scripted_server.request_count == 0
    lines = read_jsonl(shop / "data" / "dry_run_requests.jsonl")
    assert len(lines) == 2 and report.estimated_prompt_tokens > 0
    assert lines[0]["messages"][0]["role"] == "system" and "```python" in lines[0]["messages"][1]["content"]
    assert not (shop / "data" / "scene1_raw.jsonl").exists()


def bad_replies_first(server: ScriptedServer, count: int) -> None:
    """The first `count` chat completions answer text that is not JSON, the rest valid JSON."""
    from tests.servers import _schema_of, _words, synthesize

    def respond(request: dict) -> dict | str:
        if len(server.chat_requests) <= count:
            return "Sure! Here are some questions about the code."
        return synthesize(_schema_of(request["response_format"]), _words(request["messages"]))

    server.responder = respond


def test_invalid_reply_is_reasked_then_recorded_as_failure(shop: Path, scripted_server: ScriptedServer) -> None:
    # Two bad replies in a row for the first request: re-asked once, then a recorded failure.
    bad_replies_first(scripted_server, 2)
    ws = workspace(shop, scripted_server, concurrency=1, **{"scene1.limit": 3, "scene1.qa_count": 1})
    report = pipeline.run_scene1(ws)
    assert report.failed and len(report.stats.failures) == 1
    label, reason = report.stats.failures[0]
    assert "invalid reply after one re-ask" in reason
    second_ask = scripted_server.chat_requests[1].body["messages"]
    assert second_ask[-1]["role"] == "user" and "not valid" in second_ask[-1]["content"]
    assert len(read_jsonl(shop / "data" / "scene1_raw.jsonl")) == 2  # the other samples are kept


def test_cli_exit_code_one_when_samples_fail(shop: Path, scripted_server: ScriptedServer) -> None:
    bad_replies_first(scripted_server, 2)
    result = subprocess.run(
        [sys.executable, "-m", "codefactory", "--repo", str(shop), "--base-url", scripted_server.base_url,
         "--concurrency", "1", "-q", "scene1", "--limit", "2", "--qa-count", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "failed:" in result.stderr and "Traceback" not in result.stderr


def test_main_py_dry_run_from_repo_root(tmp_path: Path) -> None:
    """The original command, unchanged, run from the root of a checkout of this project."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".venv", "data", ".codefactory", "__pycache__", ".git"))
    repo = make_repo(checkout)
    repo.index.add_all()
    repo.index.write()
    from tests.gitrepos import commit_files  # noqa: PLC0415 - commit what was copied

    commit_files(repo, {}, message="snapshot")
    result = subprocess.run([sys.executable, "main.py", "scene1", "--limit", "5", "--dry-run"],
                            capture_output=True, text=True, cwd=checkout, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stderr and "5 requests" in result.stderr
    assert len(read_jsonl(checkout / "data" / "dry_run_requests.jsonl")) == 5
    assert json.loads((checkout / "data" / "chunks.json").read_text())


def test_full_build_on_code_not_written_here(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    """The stdlib's json package, committed into a temp repo, goes through the whole job."""
    import json as json_package

    source = Path(json_package.__file__).parent
    files = {f"json/{p.name}": p.read_text() for p in sorted(source.glob("*.py"))}
    make_repo(tmp_path / "stdjson", files)
    ws = workspace(tmp_path / "stdjson", scripted_server, **{"scene1.limit": 4, "scene1.qa_count": 1, "scene2.count": 1})
    report = pipeline.run_build(ws)
    assert not report.failed
    out = tmp_path / "stdjson" / "data"
    expected = {"chunks.json", "project_skeleton.txt", "project_skeleton.json", "scene1_raw.jsonl", "scene2_raw.jsonl",
                "scene1_sft.jsonl", "scene2_sft.jsonl", "combined_sft.jsonl", "manifest.json", "versions.jsonl"}
    assert expected <= {p.name for p in out.iterdir()}
    combined = read_jsonl(out / "combined_sft.jsonl")
    assert len(combined) == 5 and {r["meta"]["scene"] for r in combined} == {"scene1", "scene2"}
    versions = read_jsonl(out / "versions.jsonl")
    assert len(versions) == 1 and versions[0]["version"] == 1 and len(versions[0]["added"]) == 5


def test_bad_input_is_one_line_exit_two(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "codefactory", "--repo", str(tmp_path), "scene1", "--dry-run"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a git repository" in result.stderr
    assert not (tmp_path / "data").exists()
