"""The project skeleton: directory tree plus per-file symbols, fitted to a token budget (SPEC §3).

`project_skeleton.txt` is `Skeleton.to_text()`, `project_skeleton.json` is `Skeleton.to_dict()`. Scene 2
builds its prompts from `Skeleton.slice(paths)`, whose text for a file depends only on that file, so it
can key incremental regeneration.
"""

from __future__ import annotations

import builtins
import keyword
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .dirtree import render_tree
from .fileio import EncodedJSON, json_string, json_utf8
from .models import SourceFile
from .outline import Definition, outline
from .tokens import count_tokens
from .workers import fork_map, worker_count

# Every byte that cannot be part of an identifier, as a space: the runs left are the text's words.
_WORD_BYTES = bytes(b if chr(b).isascii() and (chr(b).isalnum() or b == ord("_")) else 32 for b in range(256))
# Names every file "references" without meaning it: keywords and builtins say nothing about structure.
_STOP_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | frozenset(
    {"self", "this", "super", "main", "test", "tests", "init", "new", "func", "function", "class", "const",
     "let", "var", "return", "string", "int", "error", "err", "impl", "pub", "use", "mod", "struct", "type"}
)
_IMPORT_PREFIXES = ("import ", "import(", "import{", "from ", "use ", "pub use ", "package ", "extern crate ",
                    "#include", "export ")
_REQUIRE = re.compile(r"\brequire\(\s*[\"'][^\"'\n]*")
_GO_IMPORT_PATH = re.compile(r"^[ \t]*(?:[\w.]+[ \t]+)?\"[^\"\n]+\"[ \t]*$", re.M)  # inside `import ( ... )`
_PACKAGE_FILES = frozenset({"__init__", "__main__", "index", "mod", "lib", "main"})
_ENTRY_POINTS = frozenset(
    {"__main__.py", "main.py", "cli.py", "app.py", "manage.py", "wsgi.py", "asgi.py", "main.go", "main.rs",
     "lib.rs", "index.js", "index.ts", "main.js", "main.ts", "server.js", "server.ts", "Main.java",
     "Application.java", "App.java"}
)
_ENTRY_BONUS = 0.1
_TREE_SHARE = 0.5  # the tree may take at most this share of the budget; the rest is for symbols
PARALLEL_MIN_CHARS = 4_000_000  # below this much text, forking costs more than it saves


@dataclass(frozen=True)
class SymbolInfo:
    """One definition: `name` is qualified (`OrderService.place`), `line` is 1-based."""

    kind: str  # "function" | "method" | "class" | "namespace"
    name: str
    signature: str
    doc: str
    line: int


@dataclass(frozen=True)
class FileSymbols:
    path: str
    language: str
    symbols: list[SymbolInfo]

    @cached_property
    def section(self) -> str:
        """This file's block in the skeleton text: a header line, then one line per symbol. Made once, by the
        worker that read the file: the skeleton is fitted to its budget by rendering its text several times."""
        lines = [f"## {self.path}"]
        for symbol in self.symbols:
            # nesting shows in the qualified name; Go methods are top-level although named Type.Method
            indent = "" if self.language == "go" else "  " * symbol.name.count(".")
            doc = f" — {symbol.doc}" if symbol.doc else ""
            lines.append(f"{indent}{symbol.signature}{doc}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        # what asdict() gives, without its recursive deep copy (half a second on a large tree)
        return {"path": self.path, "language": self.language, "symbols": [dict(vars(s)) for s in self.symbols]}

    @cached_property
    def json_element(self) -> EncodedJSON:
        """This file's entry in project_skeleton.json, encoded once: by the worker that read the file.

        `encode_json(self.to_dict(), depth=2)` written out as templates (tested equal): a third less time."""
        s = json_string
        symbols = ",\n".join(
            f'        {{\n          "kind": {s(x.kind)},\n          "name": {s(x.name)},\n'
            f'          "signature": {s(x.signature)},\n          "doc": {s(x.doc)},\n          "line": {x.line}\n        }}'
            for x in self.symbols)
        listed = f"[\n{symbols}\n      ]" if self.symbols else "[]"
        return EncodedJSON(json_utf8(f'{{\n      "path": {s(self.path)},\n      "language": {s(self.language)},\n'
                                     f'      "symbols": {listed}\n    }}'))


@dataclass(frozen=True)
class Skeleton:
    """Directory tree + symbols. `files` holds every file with symbols; `omitted` those left out of the text."""

    tree: str
    files: list[FileSymbols]
    centrality: dict[str, float]
    token_count: int
    omitted: list[str]

    def to_text(self) -> str:
        """The text of project_skeleton.txt: the tree, then the kept files' symbols, sorted by path."""
        left_out = set(self.omitted)
        parts = ["Directory tree:", self.tree, "", "Symbols:"]
        parts.extend(f.section for f in self.files if f.path not in left_out)
        if left_out:
            parts.append(f"({len(left_out)} more files' symbols omitted to fit the token budget)")
        return "\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The content of project_skeleton.json."""
        return {**self.to_json_value(), "files": [f.to_dict() for f in self.files]}

    def to_json_value(self) -> dict[str, Any]:
        """`to_dict()` with each file's entry already encoded (`FileSymbols.json_element`): what `atomic_write_json`
        writes as project_skeleton.json, the same bytes, without encoding every symbol again."""
        return {
            "tree": self.tree,
            "files": [f.json_element for f in self.files],
            "centrality": dict(sorted(self.centrality.items())),
            "token_count": self.token_count,
            "omitted": list(self.omitted),
        }

    def slice(self, paths: Iterable[str]) -> str:
        """The symbol sections of just these files (omitted ones included), sorted by path."""
        wanted = set(paths)
        return "\n".join(f.section for f in self.files if f.path in wanted)


def extract_symbols(file: SourceFile) -> FileSymbols:
    """The file's definitions in source order; none for text files and files whose parse failed."""
    tree = outline(file)
    symbols: list[SymbolInfo] = []
    if tree is not None:
        _flatten(tree.definitions, symbols)
    return FileSymbols(path=file.path, language=file.language, symbols=symbols)


def _flatten(definitions: Iterable[Definition], into: list[SymbolInfo]) -> None:
    for d in definitions:
        into.append(SymbolInfo(kind=d.kind, name=d.qualified, signature=d.signature, doc=d.doc, line=d.line + 1))
        _flatten(d.members, into)


def build_skeleton(files: Sequence[SourceFile], *, token_budget: int = 6000, repo_name: str = "",
                   symbols: Mapping[str, FileSymbols] | None = None,
                   refs: Mapping[str, FileRefs] | None = None) -> Skeleton:
    """Skeleton of `files` whose text fits `token_budget` tokens, keeping the most central files' symbols.

    `symbols` and `refs` hold `extract_symbols` and `file_refs` results already computed (by worker
    processes) for some or all files.
    """
    ordered = sorted(files, key=lambda f: f.path)
    known = symbols or {}
    all_symbols = [known[f.path] if f.path in known else extract_symbols(f) for f in ordered]
    with_symbols = [s for s in all_symbols if s.symbols]
    all_refs = None
    if refs is not None and all(f.path in refs for f in ordered):
        all_refs = [refs[f.path] for f in ordered]
    centrality = compute_centrality(ordered, all_symbols, refs=all_refs)
    tree = render_tree([f.path for f in ordered], root=repo_name, token_budget=int(token_budget * _TREE_SHARE))

    def skeleton(omitted: list[str]) -> Skeleton:
        draft = Skeleton(tree, with_symbols, centrality, 0, sorted(omitted))
        return Skeleton(tree, with_symbols, centrality, count_tokens(draft.to_text()), draft.omitted)

    base = skeleton([s.path for s in with_symbols])
    remaining = token_budget - base.token_count
    kept: list[str] = []
    omitted: list[str] = []
    for file_symbols in sorted(with_symbols, key=lambda s: (-centrality.get(s.path, 0.0), s.path)):
        if remaining <= 0:
            omitted.append(file_symbols.path)
            continue
        section = file_symbols.section
        # a section longer than 10 chars per remaining token cannot fit; skip counting it (huge generated files)
        cost = count_tokens(section) + 1 if len(section) <= 10 * remaining + 1000 else remaining + 1
        if cost <= remaining:
            kept.append(file_symbols.path)
            remaining -= cost
        else:
            omitted.append(file_symbols.path)
    result = skeleton(omitted)
    # Token counts do not add up exactly across the joins: drop the least central kept files until it fits.
    while result.token_count > token_budget and kept:
        omitted.append(kept.pop())
        result = skeleton(omitted)
    return result


@dataclass(frozen=True)
class FileRefs:
    """What centrality needs of one file's text, worked out from that file alone (in the worker that
    analyses it): the words it is made of and the words on its import lines, each "\n"-joined. One string
    each, not a set: a tree's worth of small sets costs ten times as much to send back from a worker and
    rebuild (0.45 s against 0.05 s on the stdlib).
    """

    names: str
    imported: str


def file_refs(file: SourceFile) -> FileRefs:
    return FileRefs(_words(file.text), _words(_import_text(file)))


def _words(text: str) -> str:
    """The distinct runs of ASCII letters, digits and underscores in `text`, "\n"-joined. All of them: only
    `compute_centrality` looks them up, by the names of modules and symbols (never a keyword, a builtin, one
    letter or a number), so picking those out here would be work thrown away (0.6 -> 0.4 s on the stdlib).
    The runs are found in C: bytes.translate, split, set and join."""
    return b"\n".join(set(text.encode("utf-8", "surrogatepass").translate(_WORD_BYTES).split())).decode("ascii")


def compute_centrality(files: Sequence[SourceFile], symbols: Sequence[FileSymbols], *,
                       refs: Sequence[FileRefs] | None = None, workers: int | None = None,
                       min_chars: int = PARALLEL_MIN_CHARS) -> dict[str, float]:
    """Score in [0, 1] (+ a small entry-point bonus) for each file: how much other files refer to it.

    A file's module name is `orders` for pkg/orders.py (the directory for __init__.py, index.js, mod.rs
    and Go packages). Another file that names it on an import line counts 1, plus 0.5 if it also names
    one of the file's top-level symbols; naming the module and a symbol outside imports (Java classes in
    one package) counts 0.5; a mere shared word counts nothing. Files sharing a module name share the score.
    `refs` holds each file's `file_refs` when the caller has them already; else they are worked out here.
    """
    module_files: dict[str, list[int]] = {}
    symbol_names: list[frozenset[str]] = []
    for index, (file, file_symbols) in enumerate(zip(files, symbols)):
        module = _module_name(file)
        if len(module) > 1 and not module[0].isdigit() and module not in _STOP_NAMES:  # a name, not a number
            module_files.setdefault(module, []).append(index)
        top_level = {s.name for s in file_symbols.symbols if "." not in s.name and s.kind != "namespace"}
        symbol_names.append(frozenset(n for n in top_level if len(n) > 2 and n not in _STOP_NAMES
                                      and not n.startswith("__")))
    defined_in: dict[str, list[int]] = {}  # top-level name -> the files defining it
    for index, names in enumerate(symbol_names):
        for name in names:
            defined_in.setdefault(name, []).append(index)
    module_sets = {module: frozenset(targets) for module, targets in module_files.items()}
    if refs is None:
        refs = _all_refs(files, workers, min_chars)
    raw = [0.0] * len(files)
    # users: the files of those modules one of whose top-level names the referrer mentions
    for referrer, (modules, imported, users) in enumerate(_mentions(refs, defined_in, module_sets)):
        for module in sorted(modules):  # a fixed order keeps the float sums identical across runs
            targets = module_files[module]
            # (1.0 + 0.5 * uses_symbol) / len(targets) if imported else 0.5 * uses_symbol / len(targets),
            # each target once per referrer; adding 0.0 changes nothing, so targets that get 0.0 are skipped.
            if module in imported:
                plain, symbol = 1.0 / len(targets), 1.5 / len(targets)
                for target in targets:
                    if target != referrer:
                        raw[target] += symbol if target in users else plain
            else:
                symbol = 0.5 / len(targets)
                for target in module_sets[module].intersection(users):
                    if target != referrer:
                        raw[target] += symbol
    top = max(raw, default=0.0) or 1.0
    return {
        file.path: round(score / top + (_ENTRY_BONUS if posixpath.basename(file.path) in _ENTRY_POINTS else 0.0), 4)
        for file, score in zip(files, raw)
    }


def _all_refs(files: Sequence[SourceFile], workers: int | None, min_chars: int) -> list[FileRefs]:
    """`file_refs` of every file, in forked workers on large trees: reading every identifier of every file
    is most of the skeleton's time when the analysis did not do it already."""
    sizes = [len(f.text) for f in files]
    count = worker_count(sizes, workers, min_chars)
    return [file_refs(f) for f in files] if count < 2 else fork_map(lambda i: file_refs(files[i]), sizes, count)


_Mention = tuple[frozenset[str], frozenset[str], frozenset[int]]


def _mentions(refs: Sequence[FileRefs], defined_in: Mapping[str, list[int]],
              module_sets: Mapping[str, frozenset[int]]) -> Iterator[_Mention]:
    """For each file: the modules it names, those of them on its import lines, and the files of those
    modules defining a top-level name it mentions (the only ones `compute_centrality` asks about)."""
    # sets, not dicts: set.intersection walks the smaller side only when both are sets
    modules_known, names_defined = frozenset(module_sets), frozenset(defined_in)
    wanted = modules_known | names_defined
    nothing: _Mention = (frozenset(), frozenset(), frozenset())
    for ref in refs:
        found = wanted.intersection(ref.names.split("\n"))
        modules = found.intersection(modules_known)
        if not modules:
            yield nothing
            continue
        imported = modules.intersection(ref.imported.split("\n"))
        users = set().union(*(defined_in[name] for name in found.intersection(names_defined)))
        targets = frozenset().union(*(module_sets[module] for module in modules))
        yield modules, imported, targets.intersection(users)


def _import_text(file: SourceFile) -> str:
    """The file's import/use/require lines (a line scan: a regex over every line is several times slower)."""
    text = file.text
    lines = [line for line in text.split("\n") if line.lstrip().startswith(_IMPORT_PREFIXES)]
    if file.language == "go":
        lines.extend(_GO_IMPORT_PATH.findall(text))
    if "require(" in text:
        lines.extend(_REQUIRE.findall(text))
    return "\n".join(lines)


def _module_name(file: SourceFile) -> str:
    directory, base = posixpath.split(file.path)
    stem = base.split(".", 1)[0]
    if (stem in _PACKAGE_FILES or file.language == "go") and directory:
        return posixpath.basename(directory)
    return stem
