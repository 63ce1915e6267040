"""The directory tree of the skeleton, collapsed to fit a token budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from .tokens import count_tokens

_INDENT = "  "


@dataclass
class _Dir:
    name: str
    depth: int
    parent: "_Dir | None" = None
    dirs: dict[str, "_Dir"] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    file_count: int = 0  # files in the whole subtree
    cost: int = 0  # estimated tokens of this directory's lines as currently rendered
    collapsed: bool = False

    def line(self) -> str:
        suffix = f" ({self.file_count} files)" if self.collapsed else ""
        return f"{_INDENT * self.depth}{self.name}/{suffix}"


@lru_cache(maxsize=65536)
def _line_tokens(line: str) -> int:
    return count_tokens(line) + 1  # + the newline


def render_tree(paths: list[str], *, root: str = "", token_budget: int = 3000) -> str:
    """An indented tree of `paths` (directories first, then files, both sorted).

    When the full tree is over `token_budget` tokens, directories are collapsed to one line
    (`name/ (N files)`), the deepest and largest first, and as a last resort the listing is cut short.
    """
    top = _Dir(root or ".", 0)
    for path in sorted(set(paths)):
        node = top
        *parents, base = path.split("/")
        for part in parents:
            child = node.dirs.get(part)
            if child is None:
                child = node.dirs[part] = _Dir(part, 0)
            node = child
        node.files.append(base)
    every: list[_Dir] = []
    _measure(top, every, None)
    total = top.cost
    for directory in sorted(every, key=lambda d: (-d.depth, -d.file_count, d.line())):
        if total <= token_budget:
            break
        if directory is top:
            continue
        before = directory.cost
        directory.collapsed = True
        directory.cost = _line_tokens(directory.line())
        saved = before - directory.cost
        total -= saved
        ancestor = directory.parent
        while ancestor is not None:
            ancestor.cost -= saved
            ancestor = ancestor.parent
    lines: list[str] = []
    _render(top, lines)
    if total > token_budget:
        lines = _cut(lines, token_budget)
    return "\n".join(lines)


def _measure(node: _Dir, every: list[_Dir], parent: _Dir | None) -> None:
    """Set depth, parent, file count and cost; fold chains like src/main/java/ into one line."""
    if parent is not None:
        while len(node.dirs) == 1 and not node.files:
            (child,) = node.dirs.values()
            node.name = f"{node.name}/{child.name}"
            node.dirs = child.dirs
            node.files = child.files
        node.depth = parent.depth + 1
    node.parent = parent
    every.append(node)
    node.cost = _line_tokens(node.line())
    node.file_count = len(node.files)
    for child in node.dirs.values():
        _measure(child, every, node)
        node.cost += child.cost
        node.file_count += child.file_count
    indent = _INDENT * (node.depth + 1)
    node.cost += sum(_line_tokens(indent + name) for name in node.files)


def _render(node: _Dir, lines: list[str]) -> None:
    lines.append(node.line())
    if node.collapsed:
        return
    for name in sorted(node.dirs):
        _render(node.dirs[name], lines)
    indent = _INDENT * (node.depth + 1)
    lines.extend(indent + name for name in node.files)


def _cut(lines: list[str], token_budget: int) -> list[str]:
    kept: list[str] = []
    used = _line_tokens("… (N more entries)")
    for line in lines:
        used += _line_tokens(line)
        if used > token_budget:
            kept.append(f"… ({len(lines) - len(kept)} more entries)")
            break
        kept.append(line)
    return kept
