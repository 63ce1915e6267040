"""Tree-sitter grammars and the node types that make a definition, per language.

Grammars come from the per-language wheels (tree-sitter-python, ...), which work offline; each is
loaded on first use and cached. `codefactory.outline` walks a tree with these tables.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from functools import lru_cache

from tree_sitter import Language, Parser


@dataclass(frozen=True)
class LanguageSpec:
    """Which node types of one grammar are definitions, and how they nest."""

    name: str
    module: str  # grammar wheel module
    factory: str  # function in `module` returning the grammar capsule
    functions: frozenset[str]  # function-like nodes; methods when found in a class body
    classes: frozenset[str]  # class/struct/interface/trait/impl/enum nodes (members are looked up in their body)
    namespaces: frozenset[str] = frozenset()  # module-like containers; members keep their own kind
    # wrapper node -> definition inside it (decorators, `export`, `declare`); the wrapper gives the span
    wrappers: frozenset[str] = frozenset()
    comments: frozenset[str] = frozenset({"comment"})
    # siblings that belong to the next definition (Rust attributes, TS decorators in class bodies)
    attached: frozenset[str] = frozenset()
    imports: frozenset[str] = frozenset()
    # nodes inside a class body whose children are members too (Java enum bodies)
    member_groups: frozenset[str] = frozenset()
    # `const f = () => {}` and class fields holding a function: the declaration node types
    variable_decls: frozenset[str] = frozenset()
    function_values: frozenset[str] = frozenset()
    python_docstrings: bool = False


_JS_FUNCTIONS = frozenset(
    {"function_declaration", "generator_function_declaration", "method_definition", "function_signature",
     "method_signature", "abstract_method_signature"}
)


def _javascript_like(name: str, factory: str, module: str, classes: frozenset[str], *,
                     typescript: bool) -> LanguageSpec:
    """JavaScript, TypeScript and TSX share their definition nodes; TypeScript adds namespaces."""
    return LanguageSpec(
        name=name, module=module, factory=factory, functions=_JS_FUNCTIONS, classes=classes,
        namespaces=frozenset({"internal_module", "module"}) if typescript else frozenset(),
        wrappers=frozenset({"export_statement", "ambient_declaration", "expression_statement"}),
        attached=frozenset({"decorator"}) if typescript else frozenset(),  # TS decorators are body siblings
        imports=frozenset({"import_statement"}),
        variable_decls=frozenset({"lexical_declaration", "variable_declaration", "field_definition",
                                  "public_field_definition"}),
        function_values=frozenset({"arrow_function", "function_expression", "function", "generator_function"}),
    )


_TS_CLASSES = frozenset(
    {"class_declaration", "abstract_class_declaration", "class", "interface_declaration", "enum_declaration",
     "type_alias_declaration"}
)

SPECS: dict[str, LanguageSpec] = {
    spec.name: spec
    for spec in (
        LanguageSpec(
            name="python", module="tree_sitter_python", factory="language",
            functions=frozenset({"function_definition"}),
            classes=frozenset({"class_definition"}),
            wrappers=frozenset({"decorated_definition"}),
            imports=frozenset({"import_statement", "import_from_statement", "future_import_statement"}),
            python_docstrings=True,
        ),
        _javascript_like("javascript", "language", "tree_sitter_javascript",
                         frozenset({"class_declaration", "class"}), typescript=False),
        _javascript_like("typescript", "language_typescript", "tree_sitter_typescript", _TS_CLASSES,
                         typescript=True),
        _javascript_like("tsx", "language_tsx", "tree_sitter_typescript", _TS_CLASSES, typescript=True),
        LanguageSpec(
            name="go", module="tree_sitter_go", factory="language",
            functions=frozenset({"function_declaration", "method_declaration"}),
            classes=frozenset({"type_declaration"}),
            imports=frozenset({"import_declaration", "package_clause"}),
        ),
        LanguageSpec(
            name="java", module="tree_sitter_java", factory="language",
            functions=frozenset({"method_declaration", "constructor_declaration", "compact_constructor_declaration"}),
            classes=frozenset({"class_declaration", "interface_declaration", "enum_declaration",
                               "record_declaration", "annotation_type_declaration"}),
            comments=frozenset({"line_comment", "block_comment"}),
            imports=frozenset({"import_declaration", "package_declaration"}),
            member_groups=frozenset({"enum_body_declarations"}),
        ),
        LanguageSpec(
            name="rust", module="tree_sitter_rust", factory="language",
            functions=frozenset({"function_item", "function_signature_item", "macro_definition"}),
            classes=frozenset({"struct_item", "enum_item", "union_item", "trait_item", "impl_item", "type_item"}),
            namespaces=frozenset({"mod_item"}),
            comments=frozenset({"line_comment", "block_comment"}),
            attached=frozenset({"attribute_item"}),
            imports=frozenset({"use_declaration", "extern_crate_declaration"}),
        ),
    )
}

SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(sorted(SPECS))


def get_spec(language: str) -> LanguageSpec | None:
    """The definition tables for `language`, or None when it is chunked by line windows."""
    return SPECS.get(language)


@lru_cache(maxsize=None)
def get_language(language: str) -> Language | None:
    """The tree-sitter Language for `language` (loaded once), or None if unsupported."""
    spec = SPECS.get(language)
    if spec is None:
        return None
    module = importlib.import_module(spec.module)
    return Language(getattr(module, spec.factory)())


_local = threading.local()  # a Parser holds parse state, so each thread gets its own


def get_parser(language: str) -> Parser | None:
    """A Parser for `language`, reused within the calling thread; None if unsupported."""
    parsers: dict[str, Parser] = _local.__dict__.setdefault("parsers", {})
    parser = parsers.get(language)
    if parser is None:
        grammar = get_language(language)
        if grammar is None:
            return None
        parser = parsers[language] = Parser(grammar)
    return parser
