"""Chunk boundaries follow the content: an edit changes the chunks it falls in, not those after it.

Scene-1 asks the LLM once per distinct chunk text, so a boundary that moves because of an edit
elsewhere costs a request for code that did not change (issue 7: incremental over a release history).
"""

from __future__ import annotations

from pathlib import Path

from codefactory.chunk import chunk_file
from codefactory.config import load_config
from codefactory.gitrepo import GitRepo
from codefactory.models import Chunk, SourceFile
from codefactory.pipeline import Workspace, take_snapshot
from tests.gitrepos import commit_files, make_repo
from tests.test_chunk import _check_invariants, _long_function


def _changed(before: list[Chunk], after: list[Chunk]) -> list[Chunk]:
    """Chunks of `after` whose text no chunk of `before` had: what Scene-1 would ask about again."""
    old = {c.text for c in before}
    return [c for c in after if c.text not in old]


def _changelog(releases: range) -> str:
    sections = []
    for release in reversed(releases):
        items = "\n".join(f"- Fixed issue #{release * 10 + i}: `attrs.field()` now handles case {i} of "
                          f"release {release} without copying the whole instance." for i in range(release % 4 + 2))
        sections.append(f"## 1.{release}.0 - 2024-01-{release % 28 + 1:02}\n\n### Changes\n\n{items}\n")
    return "# Changelog\n\n" + "\n".join(sections)


def test_a_new_section_on_top_of_a_changelog_changes_only_the_first_windows() -> None:
    before_text, after_text = _changelog(range(1, 60)), _changelog(range(1, 61))
    before = chunk_file(SourceFile("CHANGELOG.md", "text", before_text, ""))
    after_file = SourceFile("CHANGELOG.md", "text", after_text, "")
    after = chunk_file(after_file)
    _check_invariants(after_file, after, 800)
    assert len(before) >= 8
    changed = _changed(before, after)
    assert 1 <= len(changed) <= 2, [c.id for c in changed]
    assert all(c.start_line < 40 for c in changed), "only windows at the top, where the section went"


def test_an_edit_in_the_middle_of_a_document_changes_only_its_own_window() -> None:
    text = _changelog(range(1, 60))
    lines = text.split("\n")
    middle = len(lines) // 2
    edited = "\n".join(lines[:middle] + ["- Added a line in the middle that no window had before."] + lines[middle:])
    before = chunk_file(SourceFile("CHANGELOG.md", "text", text, ""))
    after = chunk_file(SourceFile("CHANGELOG.md", "text", edited, ""))
    changed = _changed(before, after)
    assert 1 <= len(changed) <= 2, [c.id for c in changed]
    assert any("Added a line in the middle" in c.text for c in changed)


def test_an_edit_to_a_long_function_changes_only_the_parts_around_it() -> None:
    text = "import math\n\n\n" + _long_function(300)
    lines = text.split("\n")
    edited = "\n".join(lines[:150] + ["    total += audit(order)"] + lines[150:])
    before = chunk_file(SourceFile("billing/settle.py", "python", text, ""))
    after_file = SourceFile("billing/settle.py", "python", edited, "")
    after = chunk_file(after_file)
    _check_invariants(after_file, after, 800)
    assert len([c for c in before if c.symbol == "settle"]) >= 5
    changed = _changed(before, after)
    assert 1 <= len(changed) <= 2, [c.id for c in changed]
    assert any("audit(order)" in c.text for c in changed)


def _getter(name: str) -> str:
    return f"def get_{name}(record):\n    return record.{name}\n"


def _compute(name: str) -> str:
    return (f"def compute_{name}(order, rate):\n    total = sum(item.price * item.count for item in order.items)\n"
            f"    discount = order.discount or 0\n    return round(total * (1 + rate) - discount, 2)\n")


def test_adding_a_function_to_a_run_of_tiny_ones_leaves_the_other_groups_alone(tmp_path: Path) -> None:
    # 150 one-line getters (a .pyi stub, accessors): far too many for one group, so they are grouped
    # at content-defined anchors; greedy grouping from the top shifted every group after the new one.
    getters = [_getter(f"field_{i}") for i in range(150)]
    repo = make_repo(tmp_path / "repo", {"model/access.py": "\n\n".join(getters)})
    first = str(repo.head.target)
    commit_files(repo, {"model/access.py": "\n\n".join(getters[:30] + [_getter("added")] + getters[30:])})
    ws = Workspace(repo=GitRepo(tmp_path / "repo"), config=load_config(tmp_path / "repo", environ={}), progress=False)
    before, after = take_snapshot(ws, first).chunks, take_snapshot(ws).chunks
    assert len(after) >= 5, "150 getters do not fit one chunk"
    changed = _changed(before, after)
    assert 1 <= len(changed) <= 2, [c.id for c in changed]
    assert any("get_added" in c.text for c in changed)
    for index in (70, 110, 149):  # groups well after the insertion keep their text
        holder = next(c for c in before if f"def get_field_{index}(" in c.text)
        assert holder.text in {c.text for c in after}


def test_adding_a_function_between_others_changes_only_its_group() -> None:
    functions = [(_getter if i % 3 else _compute)(str(i)) for i in range(60)]
    before = chunk_file(SourceFile("shop/rules.py", "python", "\n\n".join(functions), ""))
    for position in (5, 31, 58):
        edited = "\n\n".join(functions[:position] + [_getter("added")] + functions[position:])
        after_file = SourceFile("shop/rules.py", "python", edited, "")
        after = chunk_file(after_file)
        _check_invariants(after_file, after, 800)
        changed = _changed(before, after)
        assert len(changed) == 1 and "get_added" in changed[0].text, (position, [c.id for c in changed])
