"""`codefactory incremental` on real repositories with real commit histories (pygit2), against the
scripted loopback server, which counts every request the run makes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest
from click.testing import CliRunner

from codefactory import pipeline
from codefactory.chunk import chunk_file
from codefactory.cli import cli
from codefactory.config import load_config
from codefactory.errors import RepositoryError, RevisionError
from codefactory.gitrepo import GitRepo
from codefactory.incremental import run_incremental
from codefactory.models import SourceFile
from codefactory.store import DatasetStore
from codefactory.summary import describe_stats
from tests.gitrepos import commit_files, commit_tree, make_repo
from tests.servers import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent

BOOKS = '''"""The catalogue of books a library lends."""

from dataclasses import dataclass


@dataclass
class Book:
    isbn: str
    title: str
    copies: int = 1


class Catalogue:
    """Books by ISBN, with the number of copies on the shelf."""

    def __init__(self):
        self.books: dict[str, Book] = {}

    def add(self, book: Book) -> None:
        """Register a book, or add its copies to the one already known."""
        known = self.books.get(book.isbn)
        if known is None:
            self.books[book.isbn] = book
        else:
            known.copies += book.copies

    def available(self, isbn: str) -> int:
        """Copies on the shelf; an unknown ISBN has none."""
        book = self.books.get(isbn)
        return book.copies if book is not None else 0

    def take(self, isbn: str) -> Book:
        """Take one copy off the shelf for a loan, failing when none is left."""
        book = self.books[isbn]
        if book.copies <= 0:
            raise LookupError(f"no copy of {book.title} is available")
        book.copies -= 1
        return book

    def give_back(self, isbn: str) -> None:
        """Put a returned copy back on the shelf."""
        self.books[isbn].copies += 1
'''

LOANS = '''"""Loans of books to members, with due dates and late fines."""

from datetime import date, timedelta

from library.books import Catalogue
from library.members import Member

LOAN_DAYS = 21
FINE_PER_DAY = 0.25


class LoanDesk:
    """Lends books to members and takes them back, charging fines for late returns."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.loans: dict[tuple[str, str], date] = {}

    def lend(self, member: Member, isbn: str, today: date) -> date:
        """Lend a copy to a member in good standing and return the due date."""
        if member.blocked:
            raise PermissionError(f"{member.name} has unpaid fines")
        self.catalogue.take(isbn)
        due = today + timedelta(days=LOAN_DAYS)
        self.loans[(member.member_id, isbn)] = due
        return due

    def receive(self, member: Member, isbn: str, today: date) -> float:
        """Take a copy back; a late return adds a fine to the member's account."""
        due = self.loans.pop((member.member_id, isbn))
        self.catalogue.give_back(isbn)
        late_days = max(0, (today - due).days)
        fine = late_days * FINE_PER_DAY
        member.balance += fine
        return fine
'''

MEMBERS = '''"""Library members and their accounts."""

from dataclasses import dataclass

MAX_BALANCE = 10.0


@dataclass
class Member:
    member_id: str
    name: str
    balance: float = 0.0

    @property
    def blocked(self) -> bool:
        """A member owing more than the limit may not borrow."""
        return self.balance > MAX_BALANCE

    def pay(self, amount: float) -> float:
        """Pay towards the balance; returns what is still owed."""
        if amount <= 0:
            raise ValueError("a payment must be positive")
        self.balance = max(0.0, self.balance - amount)
        return self.balance
'''

NOTIFY = '''"""Reminders sent to members about due and overdue loans."""

from datetime import date


def reminder(name: str, title: str, due: date, today: date) -> str:
    """The text of a reminder: friendly before the due date, firm after it."""
    if today <= due:
        return f"Dear {name}, {title} is due on {due.isoformat()}."
    days = (today - due).days
    return f"Dear {name}, {title} is {days} days overdue; fines are growing."


def overdue(loans: dict[tuple[str, str], date], today: date) -> list[tuple[str, str]]:
    """Member and ISBN of every loan past its due date, oldest first."""
    late = [(due, key) for key, due in loans.items() if due < today]
    return [key for _, key in sorted(late)]
'''

REPORTS = '''"""Statistics for the librarians."""

from library.books import Catalogue


def shelf_report(catalogue: Catalogue) -> dict[str, int]:
    """Copies on the shelf per title, for titles with at least one copy."""
    return {b.title: b.copies for b in catalogue.books.values() if b.copies > 0}


def empty_titles(catalogue: Catalogue) -> list[str]:
    """Titles with every copy out on loan, sorted."""
    return sorted(b.title for b in catalogue.books.values() if b.copies == 0)
'''

FILES = {
    "library/__init__.py": '"""A small lending library."""\n',
    "library/books.py": BOOKS,
    "library/loans.py": LOANS,
    "library/members.py": MEMBERS,
    "library/notify.py": NOTIFY,
    "library/reports.py": REPORTS,
    "README.md": "# library\n\nLends books to members and charges fines for late returns.\n",
}

# Body-only edits: signatures and docstrings stay, so the skeleton does not change.
BOOKS_BODY_EDIT = BOOKS.replace("            raise LookupError(f\"no copy of {book.title} is available\")",
                                "            raise LookupError(f\"all copies of {book.title} are out\")")
NOTIFY_BODY_EDIT = NOTIFY.replace("fines are growing", "please bring it back")
BODY_EDITS = {
    "library/books.py": ("no copy of {book.title} is available", "all copies of {book.title} are out"),
    "library/loans.py": ("fine = late_days * FINE_PER_DAY", "fine = FINE_PER_DAY * late_days"),
    "library/members.py": ("max(0.0, self.balance - amount)", "max(self.balance - amount, 0.0)"),
    "library/notify.py": ("fines are growing", "please bring it back"),
    "library/reports.py": ("b.copies > 0", "b.copies >= 1"),
}
# A signature change per module: its public surface changes.
SIGNATURE_EDITS = {
    "library/books.py": ("def take(self, isbn: str) -> Book:", "def take(self, isbn: str, count: int = 1) -> Book:"),
    "library/loans.py": ("def lend(self, member: Member, isbn: str, today: date) -> date:",
                         "def lend(self, member: Member, isbn: str, today: date, days: int = LOAN_DAYS) -> date:"),
    "library/members.py": ("def pay(self, amount: float) -> float:", "def pay(self, amount: float, note: str = '') -> float:"),
    "library/notify.py": ("today: date) -> list[tuple[str, str]]:", "today: date, grace: int = 0) -> list[tuple[str, str]]:"),
    "library/reports.py": ("def empty_titles(catalogue: Catalogue)", "def empty_titles(catalogue: Catalogue, limit: int = 0)"),
}
BOOKS_SIGNATURE_EDIT = BOOKS.replace(*SIGNATURE_EDITS["library/books.py"])


class Lab:
    """A repository with its dataset, and the scripted server the runs talk to."""

    def __init__(self, path: Path, server: ScriptedServer, **flags: object) -> None:
        self.path = path
        self.server = server
        self.flags = {"scene1.qa_count": 2, "scene2.count": 2, **flags}
        self.repo = make_repo(path, FILES)

    @property
    def out(self) -> Path:
        return self.path / "data"

    def workspace(self, **flags: object) -> pipeline.Workspace:
        base = {"base_url": self.server.base_url, "model": "scripted-model", "out": str(self.out)}
        config = load_config(self.path, flags={**base, **self.flags, **flags}, environ={})
        return pipeline.Workspace(repo=GitRepo(self.path), config=config, progress=False)

    def run(self, *, since: str | None = None, until: str | None = None, fallback: str = "none",
            dry_run: bool = False, **flags: object) -> pipeline.RunReport:
        return run_incremental(self.workspace(**flags), since=since, until=until, fallback=fallback, dry_run=dry_run)

    def commit(self, files: dict[str, str] | None = None, **kwargs: object) -> str:
        return commit_files(self.repo, files, **kwargs)  # type: ignore[arg-type]

    def asked(self, scene: str) -> int:
        """Chat requests of one scene so far; Scene-2 requests carry the proposal schema."""
        scene2 = [r for r in self.server.chat_requests if "api_changes" in json.dumps(r.body)]
        return len(scene2) if scene == "scene2" else len(self.server.chat_requests) - len(scene2)

    def live(self, scene: str) -> dict[str, dict]:
        """The live samples of a scene, replayed from the raw log and the changelog, with current provenance.

        (The SFT files hold the live samples that pass the quality checks, a subset.)"""
        store = DatasetStore(self.out)
        live, raw = store.live(), store.read_raw(scene)
        return {i: {"source": live.moved.get(i, raw[i].source), "version": live.added_in[i], "input": raw[i].input}
                for i in live.ids() if i in raw}

    def sft(self, scene: str) -> dict[str, dict]:
        lines = (self.out / f"{scene}_sft.jsonl").read_text(encoding="utf-8").splitlines()
        return {r["id"]: r for r in map(json.loads, lines)}

    def versions(self) -> list[dict]:
        return [json.loads(line) for line in (self.out / "versions.jsonl").read_text().splitlines()]

    def out_state(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.out.iterdir())} if self.out.exists() else {}


@pytest.fixture
def lab(tmp_path: Path, scripted_server: ScriptedServer) -> Lab:
    lab = Lab(tmp_path / "library", scripted_server)
    report = lab.run()  # no manifest yet: a full build
    assert report.command == "build" and report.version == 1 and not report.failed
    return lab


def new_chunk_texts(old: str, new: str, path: str) -> int:
    """Chunks of `new` whose text did not exist in `old`: what an incremental run must generate."""
    before = {c.sha256 for c in chunk_file(SourceFile(path, "python", old, ""))}
    return sum(1 for c in chunk_file(SourceFile(path, "python", new, "")) if c.sha256 not in before)


def by_chunk(sft: dict[str, dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for sample_id, record in sft.items():
        found.setdefault(record["source"]["chunk_id"], set()).add(sample_id)
    return found


def test_first_run_without_manifest_is_a_full_build(lab: Lab) -> None:
    manifest = json.loads((lab.out / "manifest.json").read_text())
    assert manifest["source_commit"] == GitRepo(lab.path).head_commit()
    assert lab.asked("scene2") == 2 and lab.asked("scene1") == len(json.loads((lab.out / "chunks.json").read_text()))


def test_one_edited_function_costs_exactly_its_changed_chunks(lab: Lab) -> None:
    before = lab.live("scene1")
    chunks_before = by_chunk(before)
    proposals = set(lab.live("scene2"))
    asked = len(lab.server.chat_requests)
    lab.commit({"library/notify.py": NOTIFY_BODY_EDIT})
    report = lab.run()

    expected = new_chunk_texts(NOTIFY, NOTIFY_BODY_EDIT, "library/notify.py")
    assert expected == 1
    assert len(lab.server.chat_requests) - asked == expected, "one request per changed chunk, nothing else"
    assert lab.asked("scene2") == 2, "a body-only edit keeps every design proposal"
    assert set(lab.live("scene2")) == proposals
    after = lab.live("scene1")
    changed = chunks_before["library/notify.py::reminder"]
    assert not changed & set(after), "the edited chunk's old samples are retired"
    assert set(lab.versions()[-1]["retired"]) == changed
    for chunk_id, ids in chunks_before.items():
        if chunk_id != "library/notify.py::reminder":
            assert ids <= set(after), f"{chunk_id} keeps its sample ids"
    fresh = set(after) - set(before)
    assert len(fresh) == 2 and {after[i]["source"]["chunk_id"] for i in fresh} == {"library/notify.py::reminder"}
    assert report.version == 2 and report.added == 2 and report.retired == 2
    assert {after[i]["version"] for i in fresh} == {2}


def test_reverted_edit_brings_the_old_samples_back_from_the_cache(lab: Lab) -> None:
    original = lab.live("scene1")
    lab.commit({"library/notify.py": NOTIFY_BODY_EDIT})
    lab.run()
    asked = len(lab.server.chat_requests)
    lab.commit({"library/notify.py": NOTIFY})
    report = lab.run()
    assert len(lab.server.chat_requests) == asked, "the original text's reply is in the cache"
    assert report.version == 3 and report.added == 2 and report.retired == 2
    assert set(lab.live("scene1")) == set(original)
    lines = (lab.out / "combined_sft.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(line)["id"] for line in lines}), "a re-added sample appears once"


def test_rename_without_edits_costs_nothing_and_updates_paths(lab: Lab) -> None:
    before = lab.live("scene1")
    asked = len(lab.server.chat_requests)
    head = lab.commit(rename={"library/notify.py": "library/reminders.py"})
    report = lab.run()

    assert len(lab.server.chat_requests) == asked
    after = lab.live("scene1")
    assert set(after) == set(before), "a renamed file keeps every sample id"
    moved = [i for i, r in before.items() if r["source"]["path"] == "library/notify.py"]
    assert moved and report.moved >= len(moved) and report.version == 2
    for sample_id in moved:
        source = after[sample_id]["source"]
        assert source["path"] == "library/reminders.py" and source["commit"] == head
        assert source["chunk_id"].startswith("library/reminders.py")
    assert all("notify.py" not in json.dumps(r["source"]) for r in lab.live("scene2").values())
    sft = lab.sft("scene1")
    assert set(sft) <= set(after) and set(moved) & set(sft), "the SFT file holds live samples, renamed ones too"
    for sample_id in set(moved) & set(sft):
        assert sft[sample_id]["meta"]["source"]["path"] == "library/reminders.py"
    chunks = json.loads((lab.out / "chunks.json").read_text())
    assert {c["path"] for c in chunks} >= {"library/reminders.py"} and "library/notify.py" not in {c["path"] for c in chunks}


def test_deleted_file_retires_its_samples_without_requests(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    lab = Lab(tmp_path / "library", scripted_server, **{"scene2.count": 1})
    lab.run()
    anchored = {m for r in lab.live("scene2").values() for m in r["source"]["modules"]}
    victim = next(p for p in ("library/reports.py", "library/notify.py", "library/members.py") if p not in anchored)
    before = lab.live("scene1")
    asked = len(lab.server.chat_requests)
    lab.commit(delete=[victim])
    report = lab.run()

    assert len(lab.server.chat_requests) == asked
    gone = {i for i, r in before.items() if r["source"]["path"] == victim}
    assert gone and set(lab.live("scene1")) == set(before) - gone
    assert set(lab.versions()[-1]["retired"]) == gone and report.retired == len(gone)


def test_same_range_again_costs_nothing_and_adds_no_version(lab: Lab) -> None:
    start = GitRepo(lab.path).head_commit()
    lab.commit({"library/books.py": BOOKS_SIGNATURE_EDIT, "library/loans.py": LOANS.replace("21", "28")})
    lab.commit(rename={"library/reports.py": "library/statistics.py"})
    first = lab.run()
    assert first.version == 2
    asked = len(lab.server.chat_requests)
    state = lab.out_state()

    again = lab.run(since=start)
    assert len(lab.server.chat_requests) == asked
    assert again.version is None and len(lab.versions()) == 2
    assert lab.out_state() == state, "nothing in the dataset changes"
    nothing = lab.run()  # from the manifest's commit: an empty range
    assert nothing.version is None and len(lab.server.chat_requests) == asked


def test_signature_change_regenerates_the_anchored_proposals(lab: Lab) -> None:
    before = lab.live("scene2")
    module = next(iter(before.values()))["source"]["modules"][0]
    anchored = {i for i, r in before.items() if module in r["source"]["modules"]}
    old, new = SIGNATURE_EDITS[module]
    lab.commit({module: FILES[module].replace(old, new)})
    lab.run()

    assert lab.asked("scene2") == 2 + len(anchored)
    after = lab.live("scene2")
    assert not anchored & set(after) and set(before) - anchored <= set(after)
    fresh = [after[i] for i in set(after) - set(before)]
    assert len(fresh) == len(anchored)
    assert sorted(r["input"]["index"] for r in fresh) == sorted(before[i]["input"]["index"] for i in anchored)
    assert all(r["version"] == 2 and module in r["source"]["modules"] for r in fresh)
    prompt = next(r.body for r in lab.server.chat_requests[::-1] if "api_changes" in json.dumps(r.body))
    assert new.rstrip(":") in prompt["messages"][-1]["content"]


def test_body_only_change_in_an_anchored_module_keeps_the_proposals(lab: Lab) -> None:
    before = lab.live("scene2")
    module = next(iter(before.values()))["source"]["modules"][0]
    asked = lab.asked("scene1")
    lab.commit({module: FILES[module].replace(*BODY_EDITS[module])})
    report = lab.run()
    assert lab.asked("scene1") == asked + 1 and lab.asked("scene2") == 2
    assert lab.live("scene2") == before and report.retired == 2


def test_scene2_cap_defers_proposals_to_the_next_run(lab: Lab) -> None:
    proposals = lab.live("scene2")
    # A new public function changes a module's surface; touch one module of each proposal.
    touched = {r["source"]["modules"][0] for r in proposals.values()}
    lab.commit({p: (lab.path / p).read_text() + "\n\ndef audit_trail() -> list:\n    return []\n" for p in touched})
    report = lab.run(**{"scene2.max_new_per_run": 1})
    assert lab.asked("scene2") == 3 and report.stats.deferred == 1
    assert len(json.loads((lab.out / "pending.json").read_text())["scene2"]) == 1
    assert len(lab.live("scene2")) == 1, "both stale proposals are retired, one is regenerated"
    lab.run(**{"scene2.max_new_per_run": 1})  # nothing new committed: the deferred slot is filled
    assert lab.asked("scene2") == 4 and len(lab.live("scene2")) == 2
    assert not (lab.out / "pending.json").exists()
    assert not set(proposals) & set(lab.live("scene2"))


def test_deleted_anchor_module_regenerates_the_slot_with_the_rest(lab: Lab) -> None:
    before = lab.live("scene2")
    target = next(iter(before.values()))["source"]["modules"][0]
    hit = {i for i, r in before.items() if target in r["source"]["modules"]}
    lab.commit(delete=[target])
    lab.run()
    after = lab.live("scene2")
    assert len(after) == len(before) and not hit & set(after)
    assert all(target not in r["source"]["modules"] for r in after.values())


def test_sft_files_rebuild_byte_identical_and_chunks_match_a_full_chunking(lab: Lab) -> None:
    lab.commit({"library/books.py": BOOKS_SIGNATURE_EDIT})
    lab.run()
    lab.commit(rename={"library/notify.py": "library/reminders.py"}, files={"library/members.py": MEMBERS + "\n\ndef guest() -> Member:\n    return Member('guest', 'Guest')\n"})
    lab.run()
    lab.commit(delete=["library/reports.py"])
    lab.run()
    names = ("scene1_sft.jsonl", "scene2_sft.jsonl", "combined_sft.jsonl")
    before = {n: (lab.out / n).read_bytes() for n in names}
    for name in names:
        (lab.out / name).unlink()
    ws = lab.workspace()
    pipeline.rebuild_dataset(ws, DatasetStore(lab.out), source_commit=GitRepo(lab.path).head_commit() or "")
    assert {n: (lab.out / n).read_bytes() for n in names} == before
    full = pipeline.take_snapshot(ws)
    assert json.loads((lab.out / "chunks.json").read_text()) == [c.to_dict() for c in full.chunks]
    assert len(lab.versions()) == 4


def test_small_update_patches_the_sft_files_instead_of_rendering_all(lab: Lab) -> None:
    path = lab.out / "scene1_sft.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    untouched = next(i for i, line in enumerate(lines) if "library/members.py" in line)
    # A mark only a full re-render would remove: the patch keeps unchanged lines byte for byte.
    lines[untouched] = lines[untouched].replace("You are an expert", "You are AN expert", 1)
    path.write_text("".join(lines))
    lab.commit({"library/notify.py": NOTIFY_BODY_EDIT})
    lab.run()
    assert "You are AN expert" in path.read_text() and "You are AN expert" in (lab.out / "combined_sft.jsonl").read_text()
    path.unlink()
    pipeline.rebuild_dataset(lab.workspace(), DatasetStore(lab.out), source_commit=GitRepo(lab.path).head_commit() or "")
    assert "You are AN expert" not in path.read_text()


@pytest.mark.parametrize("since", ["no-such-branch", "0123456789abcdef0123456789abcdef01234567"])
def test_unknown_revision_is_a_one_line_error_writing_nothing(lab: Lab, since: str) -> None:
    lab.commit({"library/books.py": BOOKS_BODY_EDIT})
    state = lab.out_state()
    with pytest.raises(RevisionError, match="unknown revision") as error:
        lab.run(since=since)
    assert "\n" not in str(error.value)
    assert lab.out_state() == state


def test_rewritten_history_is_refused_with_what_to_do(lab: Lab) -> None:
    built = GitRepo(lab.path).head_commit()
    # A force-push: main is rewritten from the initial tree, so the manifest's commit is off the history.
    rewritten = commit_tree(lab.repo, {**FILES, "library/books.py": BOOKS_BODY_EDIT}, message="rewritten",
                            stamp=1_700_000_500)
    lab.repo.references.create("refs/heads/main", pygit2.Oid(hex=rewritten), force=True)
    assert GitRepo(lab.path).head_commit() == rewritten != built
    state = lab.out_state()
    with pytest.raises(RevisionError, match="not an ancestor") as error:
        lab.run()
    message = str(error.value)
    assert "force-push" in message and "codefactory build" in message and "\n" not in message
    assert lab.out_state() == state
    with pytest.raises(RevisionError, match="not an ancestor"):
        lab.run(since=built)
    report = lab.run(fallback="full")
    assert report.version == 2 and len(lab.server.chat_requests) > 0


def shallow_copy(source: Path, target: Path) -> pygit2.Repository:
    """A clone holding only HEAD's commit and tree, marked shallow the way `git clone --depth 1` does
    (libgit2 cannot make shallow clones over the local transport)."""
    src = pygit2.Repository(str(source))
    dst = pygit2.init_repository(str(target), initial_head="main")
    head = src.head.peel(pygit2.Commit)

    def copy(oid: pygit2.Oid) -> None:
        kind, data = src.odb.read(oid)
        dst.odb.write(kind, data)
        obj = src[oid]
        if isinstance(obj, pygit2.Tree):
            for entry in obj:
                copy(entry.id)

    copy(head.tree_id)
    copy(head.id)
    dst.references.create("refs/heads/main", head.id, force=True)
    (Path(dst.path) / "shallow").write_text(f"{head.id}\n")
    shutil.copytree(source / "data", target / "data")
    return dst


def test_shallow_clone_says_how_to_fetch_more_history(lab: Lab, tmp_path: Path) -> None:
    lab.commit({"library/books.py": BOOKS_BODY_EDIT})
    shallow = tmp_path / "shallow"
    shallow_copy(lab.path, shallow)
    assert GitRepo(shallow).is_shallow
    clone = Lab.__new__(Lab)
    clone.path, clone.server, clone.flags = shallow, lab.server, lab.flags
    state = clone.out_state()
    with pytest.raises(RevisionError, match="shallow clone") as error:
        clone.run()
    message = str(error.value)
    assert "git fetch --deepen" in message and "--unshallow" in message and "--fallback full" in message
    assert "\n" not in message and clone.out_state() == state
    report = clone.run(fallback="full")
    assert report.version == 2 and report.retired == 2 and report.added == 2


def test_empty_repository_is_a_one_line_error(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    make_repo(tmp_path / "empty")
    config = load_config(tmp_path / "empty", flags={"base_url": scripted_server.base_url}, environ={})
    ws = pipeline.Workspace(repo=GitRepo(tmp_path / "empty"), config=config, progress=False)
    with pytest.raises(RepositoryError, match="no commits yet") as error:
        run_incremental(ws)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "empty" / "data").exists() and scripted_server.request_count == 0


def test_detached_head_just_works(lab: Lab) -> None:
    edited = lab.commit({"library/books.py": BOOKS_BODY_EDIT})
    lab.repo.set_head(pygit2.Oid(hex=edited))
    assert lab.repo.head_is_detached
    report = lab.run()
    assert report.commit == edited and report.version == 2


def test_max_requests_defers_and_the_next_run_picks_up(lab: Lab) -> None:
    notify = NOTIFY_BODY_EDIT.replace("oldest first", "the oldest first")
    reports = REPORTS.replace("b.copies > 0", "b.copies >= 1")
    lab.commit({"library/notify.py": notify, "library/reports.py": reports})
    expected = new_chunk_texts(NOTIFY, notify, "library/notify.py") + new_chunk_texts(REPORTS, reports, "library/reports.py")
    assert expected == 3
    asked = len(lab.server.chat_requests)
    first = lab.run(max_requests=1)
    assert len(lab.server.chat_requests) - asked == 1 and first.stats.deferred == 2
    assert len(json.loads((lab.out / "pending.json").read_text())["scene1"]) == 2
    assert "pending: 2 chunks, 0 proposals" in "\n".join(describe_stats(lab.out))
    second = lab.run()  # nothing new was committed: the deferred work is what is left
    assert len(lab.server.chat_requests) - asked == 3 and second.stats.deferred == 0 and second.version == 3
    assert not (lab.out / "pending.json").exists()
    covered = {r["source"]["chunk_sha256"] for r in lab.live("scene1").values()}
    assert {c.sha256 for c in chunk_file(SourceFile("library/notify.py", "python", notify, ""))} <= covered
    assert lab.run().version is None and len(lab.server.chat_requests) - asked == 3


def test_deferred_work_survives_a_later_commit_to_the_same_file(lab: Lab) -> None:
    first_edit = REPORTS.replace(*BODY_EDITS["library/reports.py"]).replace("every copy", "all copies")
    lab.commit({"library/reports.py": first_edit})
    asked = len(lab.server.chat_requests)
    lab.run(max_requests=0)  # both changed chunks deferred
    assert len(lab.server.chat_requests) == asked
    assert len(json.loads((lab.out / "pending.json").read_text())["scene1"]) == 2
    # The next commit edits another file only; the deferred chunks' text is now old, yet still owed.
    lab.commit({"library/notify.py": NOTIFY_BODY_EDIT, "library/reports.py": first_edit + "\n# reviewed\n"})
    report = lab.run()
    # shelf_report: deferred and unchanged since; empty_titles: deferred and changed again; reminder: new
    assert len(lab.server.chat_requests) - asked == 3
    assert report.stats.deferred == 0 and not (lab.out / "pending.json").exists()
    covered = {r["source"]["chunk_sha256"] for r in lab.live("scene1").values()}
    final = first_edit + "\n# reviewed\n"
    assert {c.sha256 for c in chunk_file(SourceFile("library/reports.py", "python", final, ""))} <= covered


def test_work_deferred_by_a_limited_build_is_picked_up_and_nothing_more(tmp_path: Path,
                                                                          scripted_server: ScriptedServer) -> None:
    lab = Lab(tmp_path / "library", scripted_server, **{"scene2.count": 0})
    report = lab.run(max_requests=1, **{"scene1.limit": 4})  # no manifest: a build of the 4 best chunks
    assert report.command == "build" and len(scripted_server.chat_requests) == 1 and report.stats.deferred == 3
    owed = {e["id"] for e in json.loads((lab.out / "pending.json").read_text())["scene1"]}
    chunks = json.loads((lab.out / "chunks.json").read_text())
    left_out = {c["id"] for c in chunks if c["path"] in {i.split("::")[0] for i in owed}} - owed
    covered = {r["source"]["chunk_id"] for r in lab.live("scene1").values()}
    assert len(owed) == 3 and left_out - covered, "a file with owed work also holds chunks the limit left out"
    lab.run()  # nothing committed since: the deferred chunks, not the ones the limit left out
    assert len(scripted_server.chat_requests) == 4 and not (lab.out / "pending.json").exists()
    assert {r["source"]["chunk_id"] for r in lab.live("scene1").values()} == covered | owed


def test_dry_run_writes_the_plan_and_nothing_else(lab: Lab) -> None:
    lab.commit({"library/books.py": BOOKS_SIGNATURE_EDIT})
    state = lab.out_state()
    asked = lab.server.request_count
    report = lab.run(dry_run=True)
    assert lab.server.request_count == asked
    after = lab.out_state()
    plan = after.pop("dry_run_requests.jsonl")
    assert after == state
    requests = [json.loads(line) for line in plan.decode().splitlines()]
    assert len(requests) == report.stats.requests == 1 + sum(
        "library/books.py" in r["source"]["modules"] for r in lab.live("scene2").values())


def test_stats_show_versions_and_counts(lab: Lab) -> None:
    lab.commit({"library/books.py": BOOKS_BODY_EDIT})
    lab.run()
    lab.commit(rename={"library/notify.py": "library/reminders.py"})
    lab.run()
    text = "\n".join(describe_stats(lab.out))
    assert "version 3" in text and "  v2 " in text and "  v3 " in text
    live = len(lab.live("scene1"))
    assert f"scene1: {live} live of {live + 2} generated, {len(FILES)} files" in text
    assert text.splitlines()[-1].endswith(" moved") and "+2 -2" in text
    assert "pending" not in text


def test_cli_incremental_and_its_errors(lab: Lab) -> None:
    lab.commit({"library/books.py": BOOKS_BODY_EDIT})
    args = ["--repo", str(lab.path), "--base-url", lab.server.base_url, "--model", "scripted-model", "-q"]
    result = CliRunner().invoke(cli, [*args, "incremental"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "dataset v2: +3 added, -2 retired" in result.output  # the CLI asks the default 3 pairs a chunk

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run([sys.executable, "-m", "codefactory", *args, "incremental", "--since", "nope"],
                          capture_output=True, text=True, env=env, cwd=lab.path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["codefactory: error: unknown revision 'nope'"]
