"""The definitions of one source file, read from its tree-sitter parse.

Chunking and the skeleton both start from `outline(file)`. It parses the file once and keeps only plain
data (no tree-sitter nodes), cached per SourceFile, so `chunk` then `skeleton` over the same files parse
each file once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from tree_sitter import Node

from .languages import LanguageSpec, get_parser, get_spec
from .models import SourceFile

_SIGNATURE_CHARS = 240
_DOC_CHARS = 160
_COMMENT_MARKERS = re.compile(r"^\s*(?:/\*\*?|\*/|\*|///?!?|//|#!?|--)\s?")
_STRING_QUOTES = re.compile(r"^[rRbBuUfF]*(\"\"\"|'''|\"|')")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_SPACE_IN_BRACKETS = re.compile(r"([(\[]) | ([)\]])")


@dataclass(frozen=True)
class Definition:
    """A function, method, class-like type or namespace. Rows are 0-based and inclusive."""

    kind: str  # "function" | "method" | "class" | "namespace"
    name: str
    qualified: str  # "OrderService.place", Go "Order.Total", Rust impl methods "Type.method"
    start: int  # first row, with decorators, attributes and the doc comment directly above
    line: int  # row where the definition itself starts
    end: int
    signature: str  # header up to the body, whitespace collapsed to one line
    doc: str  # first line of the docstring or of the comment above, "" if none
    members: tuple["Definition", ...] = ()


@dataclass(frozen=True)
class Outline:
    definitions: tuple[Definition, ...]
    import_rows: frozenset[int]  # rows holding import/package/use statements (module level)


def end_row(node: Node) -> int:
    """Last row a node occupies; some grammars end a node at column 0 of the next line."""
    point = node.end_point
    if point.column == 0 and point.row > node.start_point.row:
        return point.row - 1
    return point.row


@lru_cache(maxsize=8192)
def outline(file: SourceFile) -> Outline | None:
    """The file's definitions, or None when its language has no grammar or the parse failed at the top."""
    spec = get_spec(file.language)
    parser = get_parser(file.language)
    if spec is None or parser is None:
        return None
    src = file.text.encode("utf-8", "surrogatepass")
    root = parser.parse(src).root_node
    # An ERROR at the top means tree-sitter could not find the file's structure; errors nested inside a
    # definition still leave its span right, so those files keep their tree.
    if root.type == "ERROR" or any(c.type == "ERROR" or c.is_missing for c in root.children):
        return None
    walker = _Walker(spec, src)
    definitions = walker.scope(root.named_children, "", in_class=False)
    return Outline(tuple(definitions), frozenset(walker.import_rows))


class _Walker:
    def __init__(self, spec: LanguageSpec, src: bytes) -> None:
        self.spec = spec
        self.src = src
        self.import_rows: set[int] = set()
        self.definition_types = spec.functions | spec.classes | spec.namespaces | spec.variable_decls

    def text(self, node: Node) -> str:
        return self.src[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def scope(self, children: list[Node], prefix: str, *, in_class: bool) -> list[Definition]:
        spec = self.spec
        found: list[Definition] = []
        lead: list[Node] = []  # comments/attributes directly above the next node
        for child in children:
            kind = child.type
            if kind in spec.comments or kind in spec.attached:
                starts_line = kind in spec.attached or self._starts_line(child)
                if lead and child.start_point.row > end_row(lead[-1]) + 1 or not starts_line:
                    lead = []
                if starts_line:
                    lead.append(child)
                continue
            if lead and child.start_point.row > end_row(lead[-1]) + 1:
                lead = []
            if kind in spec.imports and not in_class:
                self.import_rows.update(range(child.start_point.row, end_row(child) + 1))
            definition = self.definition(child, lead, prefix, in_class=in_class)
            if definition is not None:
                found.append(definition)
            lead = []
        return found

    def _starts_line(self, node: Node) -> bool:
        line_start = self.src.rfind(b"\n", 0, node.start_byte) + 1
        return not self.src[line_start : node.start_byte].strip()

    def _unwrap(self, node: Node) -> Node | None:
        while node.type in self.spec.wrappers:
            inner = next((c for c in node.named_children if c.type in self.definition_types
                          or c.type in self.spec.wrappers), None)
            if inner is None:
                return None
            node = inner
        return node if node.type in self.definition_types else None

    def definition(self, node: Node, lead: list[Node], prefix: str, *, in_class: bool) -> Definition | None:
        spec = self.spec
        inner = self._unwrap(node)
        if inner is None:
            return None
        kind = inner.type
        body: Node | None = inner.child_by_field_name("body")
        members: list[Definition] = []
        if kind in spec.variable_decls:
            target = self._function_variable(inner)
            if target is None:
                return None
            name_node, value = target
            name = self.text(name_node)
            body = value.child_by_field_name("body")
            if value.type == "class":
                def_kind = "class"
            else:
                def_kind = "method" if in_class else "function"
        elif kind in spec.functions:
            name = self._name(inner, exported=node is not inner)
            def_kind = "method" if in_class or kind == "method_declaration" and spec.name == "go" else "function"
            if spec.name == "go" and kind == "method_declaration":
                name = f"{self._go_receiver(inner)}.{name}"
        elif kind in spec.classes:
            def_kind = "class"
            if kind == "type_declaration":  # Go: one type per declaration, else leave it as module code
                specs = [c for c in inner.named_children if c.type in ("type_spec", "type_alias")]
                if len(specs) != 1:
                    return None
                name = self.text(specs[0].child_by_field_name("name") or specs[0])
                body = self._brace(specs[0].child_by_field_name("type"))
            elif kind == "impl_item":
                name = self._impl_type(inner)
            else:
                name = self._name(inner, exported=node is not inner)
        else:
            def_kind = "namespace"
            name = self._name(inner, exported=node is not inner).strip("\"'")
        if not name:
            return None
        qualified = f"{prefix}.{name}" if prefix else name
        if def_kind in ("class", "namespace") and body is not None:
            members = self.scope(self._members(body), qualified, in_class=def_kind == "class")
        start = min([node.start_point.row] + [c.start_point.row for c in lead])
        return Definition(
            kind=def_kind,
            name=name,
            qualified=qualified,
            start=start,
            line=inner.start_point.row,
            end=end_row(node),
            signature=self._signature(inner, body),
            doc=self._doc(body, lead),
            members=tuple(members),
        )

    def _members(self, body: Node) -> list[Node]:
        nodes: list[Node] = []
        for child in body.named_children:
            if child.type in self.spec.member_groups:
                nodes.extend(child.named_children)
            else:
                nodes.append(child)
        return nodes

    def _name(self, node: Node, *, exported: bool) -> str:
        name = node.child_by_field_name("name")
        if name is not None:
            return self.text(name)
        return "default" if exported else ""  # `export default class {}`

    def _function_variable(self, node: Node) -> tuple[Node, Node] | None:
        """`const f = () => {}` or a class field holding a function: (name node, value node)."""
        if node.type in ("lexical_declaration", "variable_declaration"):
            declarators = [c for c in node.named_children if c.type == "variable_declarator"]
            if len(declarators) != 1:
                return None
            node = declarators[0]
        name = node.child_by_field_name("name") or node.child_by_field_name("property")
        value = node.child_by_field_name("value")
        if name is None or value is None:
            return None
        if value.type in self.spec.function_values or value.type == "class":
            return name, value
        return None

    def _go_receiver(self, node: Node) -> str:
        receiver = node.child_by_field_name("receiver")
        names = _IDENTIFIER.findall(re.sub(r"\[.*", "", self.text(receiver))) if receiver else []
        return names[-1] if names else ""

    def _impl_type(self, node: Node) -> str:
        type_node = node.child_by_field_name("type")
        if type_node is None:
            return ""
        plain = re.sub(r"'\w+|<.*", "", self.text(type_node))  # drop lifetimes and generic arguments
        names = [n for n in _IDENTIFIER.findall(plain) if n not in ("mut", "dyn")]
        return names[-1] if names else ""

    def _brace(self, node: Node | None) -> Node | None:
        """The node where a Go type's body starts: its field list or its `{`."""
        if node is None:
            return None
        for child in node.children:
            if child.type in ("field_declaration_list", "{"):
                return child
        return None

    def _signature(self, node: Node, body: Node | None) -> str:
        end = node.end_byte
        if body is not None and body.start_byte > node.start_byte and body.type != "ordered_field_declaration_list":
            end = body.start_byte
        header = self.src[node.start_byte : end].decode("utf-8", "replace")
        if body is None and node.type == "macro_definition":
            header = header.split("{", 1)[0]  # the rules are the body
        header = _SPACE_IN_BRACKETS.sub(_brackets, " ".join(header.split())).replace(",)", ")")
        header = header.rstrip("{;").rstrip()
        if self.spec.python_docstrings:
            header = header.removesuffix(":")
        if len(header) > _SIGNATURE_CHARS:
            header = header[: _SIGNATURE_CHARS - 1].rstrip() + "…"
        return header

    def _doc(self, body: Node | None, lead: list[Node]) -> str:
        if self.spec.python_docstrings and body is not None and body.named_child_count:
            first = body.named_children[0]
            if first.type == "expression_statement" and first.named_child_count:
                string = first.named_children[0]
                if string.type == "string":
                    line = _first_line(_STRING_QUOTES.sub("", self.text(string)), quotes=True)
                    if line:
                        return line
        for comment in lead:
            if comment.type in self.spec.comments:
                for raw in self.text(comment).splitlines():
                    line = _first_line(_COMMENT_MARKERS.sub("", raw).replace("*/", ""))
                    if line:
                        return line
        return ""


def _brackets(match: re.Match[str]) -> str:
    # What the template r"\1\2" gives, without re.sub parsing a template at each of 57k signatures.
    return match.group(1) or match.group(2)


def _first_line(text: str, *, quotes: bool = False) -> str:
    for line in text.splitlines():
        line = line.strip()
        if quotes:  # the closing quotes of a one-line docstring
            line = line.strip("\"'").strip()
        if line:
            return line[:_DOC_CHARS]
    return ""
