"""Grounding without an LLM: do the names a sample cites exist in the repository?

The index is built from the repository's tree at the dataset's source commit (the same scan the
pipeline uses), so a verdict depends only on the raw logs, the changelog and that commit: rebuilding
the SFT files stays byte-identical whatever other files happen to be in the output directory.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

from codefactory.models import SourceFile

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[^\W\d_][\w'’-]*|\d+", re.UNICODE)
_BACKTICKED = re.compile(r"`([^`\n]{1,120})`")
_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z]{1,5})(?![\w/(])")
# Code-shaped words in prose: CamelCase, camelCase, snake_case, dotted.names and call()s.
_CODE_SHAPED = re.compile(
    r"\b(?:[A-Z][a-z0-9]+[A-Z]\w*|[a-z][a-z0-9]*[A-Z]\w*|[A-Za-z]\w*_\w+|_\w+)\b"
    r"|\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?=\W|$)"
    r"|\b[A-Za-z_]\w*(?=\(\))"
)
_SOURCE_SUFFIXES = frozenset({".py", ".js", ".jsx", ".ts", ".tsx", ".go", ".java", ".rs", ".rb", ".php", ".c", ".h",
                              ".cc", ".cpp", ".hpp", ".cs", ".kt", ".swift", ".scala", ".sql", ".sh", ".toml",
                              ".yaml", ".yml", ".json", ".md", ".cfg", ".ini", ".proto"})

# Names any program may use without defining them: keywords, builtins and the usual runtime
# types of the supported languages. Citing them proves nothing, and they never count as invented.
LANGUAGE_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | frozenset("""
self cls this super args kwargs async await yield lambda None True False null undefined nil NaN Infinity
console window document process module exports require import export default function const let var new
typeof instanceof void delete Promise Array Object String Number Boolean Symbol Map Set WeakMap JSON Math
Date RegExp Error TypeError RangeError Buffer fetch setTimeout interface type enum extends implements
public private protected static final abstract void int long short byte char float double boolean
List ArrayList HashMap Optional Override Integer Exception RuntimeException IllegalArgumentException
func package defer go chan map struct make len cap append copy panic recover string error rune uint
uint8 uint16 uint32 uint64 int8 int16 int32 int64 float32 float64 err ctx context fmt errors http
fn impl pub mod use crate mut ref trait where Self Option Some Result Ok Err Vec Box Rc Arc HashSet
Into From Clone Debug Default unwrap expect iter collect println format
""".split())
# Words so common in prose that finding them in both an answer and the code proves nothing.
_PROSE = frozenset("""
the and for with that this from when then else into over each which what will does have been return returns
value values data item items list name names call calls called method function class object code file line
true false none null new get set add use used using true not all any one two
""".split())


def words_in(text: str) -> list[str]:
    return _WORD.findall(text)


def identifiers_in(text: str, *, loose: bool = False) -> set[str]:
    """Identifier-like tokens of `text`; dotted names give each part. `loose` takes every word,
    else only code-shaped or backticked names (what a text *cites* as code)."""
    if loose:
        return set(_IDENT.findall(text))
    found: set[str] = set()
    for span in _BACKTICKED.findall(text):
        # `quantity * price` cites names; `empty cart` is emphasis in prose, not code.
        if re.search(r"[._()\[\]:/=<>*+-]", span) or _IDENT.fullmatch(span.strip()):
            found.update(_IDENT.findall(_strip_strings(span)))
    for match in _CODE_SHAPED.finditer(_BACKTICKED.sub(" ", text)):
        found.update(_IDENT.findall(match.group(0)))
    return {name for name in found if len(name) > 1}


def path_names(path: str) -> list[str]:
    """The identifiers in a file's path: a file is named by its path as much as by what it holds."""
    return _IDENT.findall(path)


def cited_paths(text: str) -> set[str]:
    """File paths a text names: `shop/orders.py`, or a bare `orders.py` (lowercase stem, known suffix);
    `self.items`, `Node.js` and `response.json()` are not paths."""
    found = set()
    for candidate in _PATH.findall(text):
        path = PurePosixPath(candidate)
        if path.suffix.lower() in _SOURCE_SUFFIXES and ("/" in candidate or path.stem.islower()):
            found.add(candidate)
    return found


def code_shaped(name: str) -> bool:
    """snake_case or camelCase/CamelCase with an inner capital: a name nobody writes in plain prose."""
    core = name.strip("_")
    return "_" in core or any(c.isupper() for c in core[1:]) and any(c.islower() for c in core)


def _strip_strings(span: str) -> str:
    return re.sub(r"\"[^\"]*\"|'[^']*'", " ", span)


@dataclass
class Definition:
    qualified: str  # "OrderService.place"
    kind: str  # "function" | "method" | "class" | "namespace"
    path: str


@dataclass(frozen=True)
class FileEntry:
    """One file's share of the index: its identifiers, the code-shaped ones, its definitions in source order."""

    tokens: frozenset[str]
    names: frozenset[str]  # code-shaped tokens (the path's stem and definitions are added by the index)
    definitions: tuple[tuple[str, str], ...] = ()  # (qualified name, kind)


def file_entry(file: SourceFile, definitions: Iterable[tuple[str, str]] = ()) -> FileEntry:
    found = frozenset(_IDENT.findall(file.text))
    # snake_case and camelCase names are code wherever they appear; plain words may be prose
    return FileEntry(found, frozenset(t for t in found if code_shaped(t)), tuple(definitions))


@dataclass
class RepoIndex:
    """Every name in the repository's processed files, and where each symbol is defined."""

    # Any collection that answers `in`: a set, or (index_cache.py) the number of files holding each name.
    tokens: Collection[str] = frozenset()
    paths: frozenset[str] = frozenset()
    definitions: Mapping[str, list[Definition]] = field(default_factory=dict)  # by simple and qualified name
    # Each file's defined and code-shaped names; a mapping that may read them only when asked.
    names_by_path: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, files: Iterable[SourceFile], definitions: Iterable[Definition]) -> "RepoIndex":
        definitions = list(definitions)
        by_path: dict[str, list[tuple[str, str]]] = {}
        for definition in definitions:
            by_path.setdefault(definition.path, []).append((definition.qualified, definition.kind))
        entries = {f.path: file_entry(f, by_path.pop(f.path, ())) for f in files}
        return cls.from_entries(entries, [d for d in definitions if d.path in by_path])  # of no scanned file

    @classmethod
    def from_entries(cls, entries: Mapping[str, "FileEntry"], extra: Iterable[Definition] = ()) -> "RepoIndex":
        """The index of the files whose entries these are: the same as `build` over those files, so an index
        can be kept per file and patched for the files a commit changed (index_cache.py)."""
        tokens: set[str] = set()
        names: dict[str, set[str]] = {}
        definitions: list[Definition] = []
        for path in sorted(entries):  # path order: the skeleton's, which decides `defined`'s first match
            entry = entries[path]
            tokens.update(entry.tokens)
            tokens.update(path_names(path))
            names[path] = {PurePosixPath(path).stem, *entry.names}
            definitions.extend(Definition(q, k, path) for q, k in entry.definitions)
        definitions.extend(extra)
        for definition in definitions:
            names.setdefault(definition.path, set()).add(definition.qualified.rsplit(".", 1)[-1])
        return cls(frozenset(tokens), frozenset(entries), by_name(definitions),
                   {p: frozenset(n) for p, n in names.items()})

    def module_names(self, modules: Iterable[str]) -> set[str]:
        """What citing a module looks like: its path, stem, symbols and code-shaped names."""
        found: set[str] = set()
        for module in modules:
            found.update({module, PurePosixPath(module).stem}, self.names_by_path.get(module, ()))
        return found

    def knows_path(self, path: str) -> bool:
        path = path.lstrip("./")
        return path in self.paths or any(p.endswith("/" + path) for p in self.paths)

    def defined(self, name: str, *, within: str | None = None) -> Definition | None:
        """The definition of `name` (qualified or simple); with `within`, only members of that class."""
        if within:
            for definition in self.definitions.get(f"{within}.{name}", []):
                return definition
            return None
        for definition in self.definitions.get(name, []):
            # A bare name refers to a top-level thing or a class; `refund` alone is not OrderService.refund.
            if definition.qualified == name or definition.kind == "class":
                return definition
        return None


def by_name(definitions: Iterable[Definition]) -> dict[str, list[Definition]]:
    """Definitions by qualified and by simple name (`OrderService.place` and `place`), in the order given."""
    found: dict[str, list[Definition]] = {}
    for definition in definitions:
        found.setdefault(definition.qualified, []).append(definition)
        simple = definition.qualified.rsplit(".", 1)[-1]
        if simple != definition.qualified:
            found.setdefault(simple, []).append(definition)
    return found


def meaningful(names: Iterable[str]) -> set[str]:
    """Names that identify something in this project rather than the language or plain English."""
    return {n for n in set(names) - LANGUAGE_NAMES if len(n) > 2 and n.lower() not in _PROSE}


class Scene1Citations(NamedTuple):
    """What a Scene-1 answer cites, found without the repository: only `lookups` and `paths` need the index,
    so a verdict can be kept per sample and replayed against a later commit's index (quality_cache.py)."""

    lookups: Sequence[str]  # cited names the chunk does not hold: unknown unless the repository has them
    paths: Sequence[str]  # cited file paths
    named: int  # the chunk's own identifiers the answer uses
    ungrounded: bool  # the chunk has identifiers and the answer names none of them


def scene1_citations(question: str, answer: str, code: str, *,
                     code_names: AbstractSet[str] | None = None) -> Scene1Citations:
    """`code_names`: identifiers_in(code, loose=True), when the caller has them already."""
    code_names = (set(_IDENT.findall(code)) if code_names is None else code_names) - LANGUAGE_NAMES
    chunk_names = meaningful(code_names)
    # A bare prose word ("the items") is not a citation; a backticked or code-shaped one (`items`) is.
    cited_in_answer = identifiers_in(answer)
    named = (meaningful(identifiers_in(answer, loose=True)) | (cited_in_answer - LANGUAGE_NAMES)) & code_names
    # Neither a backticked span nor a code-shaped name crosses a line, so the question's and the answer's
    # citations together are those of both texts joined.
    cited = meaningful(identifiers_in(question) | cited_in_answer)
    return Scene1Citations(sorted(cited - chunk_names), sorted(cited_paths(answer)), len(named),
                           bool(chunk_names) and not named)


def scene1_grounding(citations: Scene1Citations, index: RepoIndex) -> tuple[list[tuple[str, str]], float]:
    """Grounding flags of a Scene-1 answer and its grounding score (chunk names used, unknown ones penalised)."""
    unknown = [n for n in citations.lookups if n not in index.tokens]
    missing_paths = [p for p in citations.paths if not index.knows_path(p)]
    flags: list[tuple[str, str]] = []
    if unknown or missing_paths:  # the worse flag first: it is the reason given when flagged samples are dropped
        flags.append(("unknown_identifiers", "names that exist nowhere in the repository: "
                      + ", ".join((unknown + missing_paths)[:6])))
    if citations.ungrounded:
        flags.append(("ungrounded", "the answer names none of the chunk's identifiers"))
    return flags, float(citations.named) - 2.0 * (len(unknown) + len(missing_paths))


def scene1_flags(question: str, answer: str, code: str, index: RepoIndex) -> tuple[list[tuple[str, str]], float]:
    return scene1_grounding(scene1_citations(question, answer, code), index)


# "Add a `refund` method to `Payments`", "introduce an AuditLog model", "new endpoint `export_orders()`".
_ADDS = re.compile(
    r"\b(?:add|adds|adding|introduce|introduces|introducing|create|creates|creating|define|defines|"
    r"implement|implements|new)\b(?:\s+(?:a|an|the|new|separate|dedicated|public|private))*\s+"
    r"(`[^`\n]{1,80}`|[A-Za-z_][\w.]*(?:\(\))?)"
    r"(?:[^.;`\n]{0,40}?\b(?:to|on|in|inside|of)\s+(`[^`\n]{1,80}`|[A-Z]\w*))?",
    re.IGNORECASE,
)


def scene2_flags(texts: Iterable[str], modules: Iterable[str], index: RepoIndex) -> tuple[list[tuple[str, str]], float]:
    """Flags of a Scene-2 proposal: it "adds" something that already exists, or cites nothing of the project."""
    texts = list(texts)
    flags: list[tuple[str, str]] = []
    existing: list[str] = []
    for text in texts:
        for match in _ADDS.finditer(text):
            name, owner = _code_name(match.group(1)), _code_name(match.group(2) or "")
            if not name or not _is_code_like(match.group(1)):
                continue
            found = index.defined(name, within=owner or None)
            if found is not None:
                existing.append(f"{found.qualified} ({found.path})")
    if existing:
        flags.append(("reinvents_existing", "proposes adding what already exists: " + ", ".join(sorted(set(existing))[:4])))
    anchors = index.module_names(modules)
    anchors = meaningful(anchors) | {a for a in anchors if "/" in a}
    joined = "\n".join(texts)
    mentioned = identifiers_in(joined, loose=True) | cited_paths(joined)
    if anchors and not mentioned & anchors:
        flags.append(("ungrounded", "the proposal names none of its anchor modules or their symbols"))
    return flags, float(len(mentioned & anchors)) - 2.0 * len(existing)


def _code_name(token: str) -> str:
    token = token.strip("`").strip()
    token = re.sub(r"\(.*\)$", "", token)
    if not re.fullmatch(r"[A-Za-z_][\w.]*", token):
        return ""
    return token


def _is_code_like(token: str) -> bool:
    if token.startswith("`"):
        return True
    bare = token.rstrip("()")
    return token.endswith("()") or bool(_CODE_SHAPED.fullmatch(bare)) or "." in bare
