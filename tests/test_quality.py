"""Validation, grounding, dedup and the judge, on planted samples through the real pipeline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codefactory import pipeline, quality
from codefactory import dedup
from codefactory.dedup import Candidate, deduplicate, normalise
from codefactory.grounding import RepoIndex, identifiers_in, scene1_flags
from codefactory.models import Sample, SourceFile
from codefactory.quality import QualitySettings, assess
from codefactory.quality_cache import quality_cache_dir
from codefactory.store import DatasetStore
from codefactory.summary import describe_report, describe_stats
from codefactory.validate import check_placeholder, check_restates_code, reasoning_steps
from codefactory.workers import fork_map
from tests.planted import PLANTED, billing_repo, ids_by_question, read_jsonl, responder, workspace
from tests.servers import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def billing(tmp_path: Path, scripted_server: ScriptedServer) -> Path:
    root = billing_repo(tmp_path)
    responder(scripted_server)
    return root


def build(root: Path, server: ScriptedServer, **flags: object) -> pipeline.RunReport:
    settings = {"scene1.qa_count": len(PLANTED), "scene2.count": 2, **flags}
    return pipeline.run_build(workspace(root, server, **settings))


def test_planted_bad_samples_are_dropped_with_their_reason_and_good_ones_kept(
        billing: Path, scripted_server: ScriptedServer) -> None:
    report = build(billing, scripted_server)
    assert not report.failed
    out = billing / "data"
    ids = ids_by_question(out)
    assert set(ids) == set(PLANTED), "every planted pair reached the raw log"
    quality = json.loads((out / "quality.json").read_text())
    verdicts = quality["samples"]
    for name, (_, reason) in PLANTED.items():
        verdict = verdicts[ids[name]]
        assert verdict.get("reason") == reason, (name, verdict)
        assert verdict["kept"] is (reason is None)
    assert "same text as " + ids["good"] in verdicts[ids["duplicate"]]["detail"]
    assert ids["good"] in verdicts[ids["near_duplicate"]]["detail"]

    # Scene-2: the proposal that "adds" an existing class is flagged (and dropped); the other one is kept.
    proposals = {r["id"]: r for r in read_jsonl(out / "scene2_raw.jsonl")}
    reinvented = [i for i, r in proposals.items() if "`Ledger` class" in r["proposal"]["api_changes"][0]]
    assert len(reinvented) == 1 and len(proposals) == 2
    assert verdicts[reinvented[0]]["reason"] == "reinvents_existing"
    assert "Ledger (billing/ledger.py)" in verdicts[reinvented[0]]["flags"]["reinvents_existing"]
    assert all(verdicts[i]["kept"] for i in proposals if i not in reinvented)

    sft_ids = {r["id"] for r in read_jsonl(out / "combined_sft.jsonl")}
    assert sft_ids == {i for i, v in verdicts.items() if v["kept"]}
    counts = quality["counts"]
    assert counts["live"] == len(verdicts) and counts["kept"] == len(sft_ids)
    assert counts["by_reason"]["placeholder"] >= 2 and counts["flagged"] >= 3 and 0 < counts["flag_rate"] < 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["total"] == len(sft_ids)

    summary = "\n".join(describe_report(report))
    assert f"quality: {len(sft_ids)} of {counts['live']} live samples kept" in summary
    assert "refusal 1" in summary and "grounding flags:" in summary and "%" in summary
    stats = "\n".join(describe_stats(out))
    assert "dropped: " in stats and "unknown_identifiers" in stats


def test_rebuild_is_byte_identical_and_flagged_samples_can_be_kept(billing: Path, scripted_server: ScriptedServer) -> None:
    build(billing, scripted_server)
    out = billing / "data"
    names = ("scene1_sft.jsonl", "scene2_sft.jsonl", "combined_sft.jsonl", "quality.json")
    before = {n: (out / n).read_bytes() for n in names}
    ws = workspace(billing, scripted_server)
    store = DatasetStore(out)
    commit = store.manifest()["source_commit"]
    (out / "quality.json").unlink()
    (out / "manifest.json").unlink()  # no patching: every line is rendered again
    pipeline.rebuild_dataset(ws, store, source_commit=commit)
    assert {n: (out / n).read_bytes() for n in names} == before

    ids = ids_by_question(out)
    pipeline.rebuild_dataset(workspace(billing, scripted_server, **{"quality.flagged": "keep"}), store,
                             source_commit=commit)
    kept = {r["id"]: r for r in read_jsonl(out / "combined_sft.jsonl")}
    for name in ("hallucinated", "ungrounded"):
        assert ids[name] in kept, "with quality.flagged=keep a flagged sample stays, its flags in meta"
        assert kept[ids[name]]["meta"]["quality"]["flags"]
    assert ids["refusal"] not in kept  # validation failures are dropped whatever the flag policy

    pipeline.rebuild_dataset(workspace(billing, scripted_server, **{"quality.enabled": False}), store,
                             source_commit=commit)
    assert len(read_jsonl(out / "combined_sft.jsonl")) == sum(1 for _ in store.live().ids())


def test_facts_checked_in_worker_processes_give_the_same_verdicts(
        billing: Path, scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    build(billing, scripted_server)
    scripted_server.stop()
    out = billing / "data"
    ws = workspace(billing, scripted_server)
    commit = DatasetStore(out).manifest()["source_commit"]
    names = ("combined_sft.jsonl", "quality.json")

    def rebuilt() -> dict[str, bytes]:
        shutil.rmtree(quality_cache_dir(ws))  # no kept facts or signatures: every sample is checked
        (out / "quality.json").unlink()
        pipeline.rebuild_dataset(ws, DatasetStore(out), source_commit=commit)
        return {n: (out / n).read_bytes() for n in names}

    serial = rebuilt()
    forked: list[int] = []

    def spy(job: Any, sizes: Any, workers: int) -> Any:
        forked.append(workers)
        return fork_map(job, sizes, workers)

    monkeypatch.setattr(quality, "worker_count", lambda *_: 2)
    monkeypatch.setattr(quality, "fork_map", spy)
    assert rebuilt() == serial
    assert forked == [2]
    assert json.loads(serial["quality.json"])["counts"]["dropped"] > 0


def test_dedup_keeps_the_better_grounded_sample_deterministically() -> None:
    code = "def settle(account, amount):\n    account.balance -= amount\n    return account.balance\n"
    index = RepoIndex.build([SourceFile("pay.py", "python", code, "0" * 40)], [])

    def sample(sample_id: str, answer: str) -> Sample:
        content = {"question": "What does settle do to the balance of an account when it runs?",
                   "thinking_trace": "First, settle takes the account. Then it lowers account.balance by amount. "
                                     "Finally it returns the new balance.", "answer": answer}
        return Sample(sample_id, "scene1", content, {"language": "python"}, {}, {"code": code})

    vague = sample("s1-a", "It lowers the stored value by the given number and gives the new value back to you.")
    grounded = sample("s1-b", "It lowers the stored value by the given `amount` and gives `account.balance` back to you.")
    settings = QualitySettings(flagged="keep", near_duplicate_threshold=0.5)
    first = assess([vague, grounded], index, settings)
    assert first.verdicts["s1-a"].dropped == "near_duplicate" and first.verdicts["s1-b"].dropped is None
    again = assess([vague, grounded], index, settings)
    assert [v.to_dict() for v in again.verdicts.values()] == [v.to_dict() for v in first.verdicts.values()]

    candidates = [Candidate("x1", "scene1", "Hello, World!  `It` works."), Candidate("x2", "scene1", "hello world it WORKS"),
                  Candidate("x3", "scene2", "hello world it works")]
    assert deduplicate(candidates, 0.8) == {"x2": ("duplicate", "same text as x1")}
    assert normalise("A  `b`—C!") == "a b c"


def test_near_duplicates_with_kept_signatures_read_only_the_texts_lsh_pairs() -> None:
    base = ("the scheduler retries a failed job three times with exponential backoff before it marks the job "
            "as dead and notifies the owner by email; the owner can then requeue it from the dashboard, which "
            "resets its attempt counter and clears the last error so the next run starts from a clean state")
    texts = {"a": base, "b": base.replace("three", "four"), "c": "invoices are rendered to pdf once a month",
             "d": "a cache entry expires after ten minutes unless it is touched again", "e": "x " * 3}
    signatures: dict = {}
    eager = deduplicate([Candidate(i, "scene1", t) for i, t in texts.items()], 0.8, signatures)
    assert eager == {"b": ("near_duplicate", f"{dedup.jaccard(dedup.shingles(texts['a']), dedup.shingles(texts['b'])):.2f} similar to a")}
    assert set(signatures) == set(texts)

    read: list[str] = []

    def reader(sample_id: str):
        return lambda: read.append(sample_id) or texts[sample_id]

    lazy = [Candidate(i, "scene1", reader(i), dedup.text_digest(normalise(t))) for i, t in texts.items()]
    similarities: dict = {}
    assert deduplicate(lazy, 0.8, signatures, similarities=similarities) == eager
    assert sorted(read) == ["a", "b"]  # the pair LSH proposed; no other text was needed
    pair = tuple(sorted(c.digest for c in lazy if c.id in ("a", "b")))
    assert similarities == {pair: dedup.jaccard(dedup.shingles(texts["a"]), dedup.shingles(texts["b"]))}
    read.clear()
    assert deduplicate(lazy, 0.8, signatures, similarities=similarities) == eager
    assert read == []  # a pair compared before is decided without reading either text
    # Texts seen before (in other pairs) but never compared with each other are read when compared.
    seen_apart = {(pair[0], "0" * 40): 0.1, (pair[1], "1" * 40): 0.1}
    batches: list[list[str]] = []
    assert deduplicate(lazy, 0.8, signatures, lambda ids: batches.append(list(ids)) or {},
                       similarities=seen_apart) == eager
    assert batches == [] and sorted(read) == ["a", "b"]
    # The same texts in another scene never pair with these.
    assert deduplicate([Candidate("a", "scene1", texts["a"]), Candidate("b", "scene2", texts["b"])], 0.8) == {}


def test_band_rows_share_a_group_exactly_when_equal() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    block = rng.integers(0, 4, size=(400, 3), dtype=np.uint64)  # few values: many equal rows, some hashes shared
    groups = dedup._equal_rows(block)
    for a in range(0, 400, 7):
        for b in range(400):
            assert (groups[a] == groups[b]) == bool((block[a] == block[b]).all())


def test_default_lsh_bands_are_the_ones_datasketch_picks() -> None:
    from datasketch import MinHashLSH

    threshold = QualitySettings().near_duplicate_threshold * dedup.LSH_RECALL
    lsh = MinHashLSH(threshold=threshold, num_perm=dedup.NUM_PERM)
    assert dedup._BANDS[round(threshold, 6)] == (lsh.b, lsh.r)


@pytest.mark.parametrize("text", [
    "", "one", "how does the ledger post a refund", "the same words the same words " * 40,
    "ünïcödé ß naïve café 東京 emoji 🎉 text", " ".join(f"w{i}" for i in range(3000)),
])
def test_minhash_values_are_datasketchs(text: str) -> None:
    from datasketch import MinHash

    normalised = normalise(text)
    expected = MinHash(num_perm=dedup.NUM_PERM, seed=dedup._SEED, scheme=dedup.SCHEME)
    expected.update_batch([g.encode("utf-8") for g in dedup._grams(normalised)])
    values = dedup.minhash_values(normalised)
    assert values.dtype == expected.hashvalues.dtype
    assert values.tolist() == expected.hashvalues.tolist()


def test_hashing_new_texts_does_not_import_datasketch() -> None:
    code = ("import sys; from codefactory import dedup; dedup.minhash_values('a few words to hash'); "
            "print('datasketch' in sys.modules, 'scipy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_check_helpers() -> None:
    assert reasoning_steps("First a is read. Then b is set; finally c returns the result.") == 3
    assert reasoning_steps("It does it.") == 1 and reasoning_steps("Done. Yes.") == 0
    assert check_placeholder("the TODO comment explains it", code="# TODO: remove") is None
    assert check_placeholder("N/A")[0] == "placeholder" and check_placeholder("Step 1: ... then done")
    assert check_placeholder("...*, 1, 2023-08-27T09:45:26.133Z,")  # what a tiny model echoed from a schema
    assert check_placeholder("spreads `...` and ...args into the call") is None
    assert check_restates_code("What does `x = compute_total(items)` do?", "    x = compute_total(items)\n")
    assert check_restates_code("Why does compute_total skip empty items?", "    x = compute_total(items)\n") is None
    assert identifiers_in("Call `Order.total()` then refund_all, see OrderService") >= {"Order", "total", "refund_all",
                                                                                          "OrderService"}
    flags, _ = scene1_flags("q?", "It reads `shop/missing.py` and calls `place`.", "def place(): pass",
                            RepoIndex.build([SourceFile("shop/orders.py", "python", "def place(): pass", "")], []))
    assert flags[0][0] == "unknown_identifiers" and "shop/missing.py" in flags[0][1]


def judge_responder(server: ScriptedServer, low_marker: str) -> None:
    """Judge requests about the sample containing `low_marker` get low scores, the others high ones."""
    inner = server.responder

    def respond(request: dict) -> dict:
        user = request["messages"][-1]["content"]
        if "Score this sample" in user:
            low = low_marker in user
            score = 1 if low else 5
            return {"rationale": "Checked against the code shown.", "accuracy": score, "usefulness": score,
                    "clarity": 2 if low else 4}
        return inner(request)

    server.responder = respond


def test_judge_scores_are_logged_cached_and_applied(billing: Path, scripted_server: ScriptedServer) -> None:
    judge_responder(scripted_server, low_marker="LATE_FEE only for overdue")
    report = build(billing, scripted_server, **{"judge.enabled": True, "judge.threshold": 3.5})
    assert not report.failed and report.judge is not None and report.judge.judged > 0
    out = billing / "data"
    ids = ids_by_question(out)
    verdicts = json.loads((out / "quality.json").read_text())["samples"]
    assert verdicts[ids["good2"]]["reason"] == "judge_below_threshold"
    assert verdicts[ids["good"]]["kept"] and verdicts[ids["good"]]["judge"] == 4.67
    # Append-only: the judged record is logged again with its scores; the latest record wins.
    lines = [r for r in read_jsonl(out / "scene1_raw.jsonl") if r["id"] == ids["good"]]
    assert len(lines) == 2 and "quality" not in lines[0]
    judge = lines[1]["quality"]["judge"]
    assert judge["accuracy"] == 5 and judge["prompt_version"].startswith("judge@") and judge["cache_key"]
    assert DatasetStore(out).read_raw("scene1")[ids["good"]].quality["judge"]["score"] == 4.67
    assert ids["refusal"] not in {r["id"] for r in read_jsonl(out / "scene1_raw.jsonl") if "quality" in r}

    calls = len(scripted_server.chat_requests)
    again = build(billing, scripted_server, **{"judge.enabled": True, "judge.threshold": 3.5})
    assert len(scripted_server.chat_requests) == calls, "judged samples are neither re-asked nor re-judged"
    assert again.judge is not None and again.judge.requests == 0
    summary = "\n".join(describe_report(report))
    assert "judge: " in summary and "judge_below_threshold 1" in summary


def test_cli_judge_flag_and_stats(billing: Path, scripted_server: ScriptedServer) -> None:
    judge_responder(scripted_server, low_marker="no sample has this")
    command = [sys.executable, "-m", "codefactory", "--repo", str(billing), "--base-url", scripted_server.base_url,
               "--model", "scripted-model", "-q", "--judge", "scene1", "--limit", "1", "--qa-count", "2"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "judge: 2 samples scored" in result.stdout + result.stderr
    stats = subprocess.run([sys.executable, "-m", "codefactory", "--repo", str(billing), "stats"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert stats.returncode == 0 and "quality: " in stats.stdout and "2 judged" in stats.stdout
