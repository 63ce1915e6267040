"""Chunking at definition boundaries, merging, splitting and window fallback (SPEC §4 Chunk)."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import pytest

from codefactory.chunk import chunk_file, chunk_files
from codefactory.models import Chunk, SourceFile
from codefactory.outline import outline
from codefactory.tokens import count_tokens
from tests.code_samples import SOURCES, sample

# (id after "path", kind, symbol, start_line, end_line) with max_tokens=100, min_tokens=30: small enough
# that every sample class is split into its header and methods.
SPLIT = {
    "python": [
        ("#L1-L11", "module", "", 1, 11),
        ("::LineItem", "class", "LineItem", 14, 24),
        ("::OrderService+OrderService.__init__", "class", "OrderService, OrderService.__init__", 27, 37),
        ("::OrderService.place#part1", "method", "OrderService.place", 39, 43),
        ("::OrderService.place#part2", "method", "OrderService.place", 44, 48),
        ("::OrderService.cancel", "method", "OrderService.cancel", 50, 57),
        ("::OrderService.status+OrderService.count", "method", "OrderService.status, OrderService.count", 59, 60),
        ("::parse_sku", "function", "parse_sku", 63, 68),
        ("::helper+helper#2", "function", "helper, helper", 71, 81),
    ],
    "go": [
        ("#L1-L10", "module", "", 1, 10),
        ("::Order+Store", "class", "Order, Store", 12, 24),
        ("::Order.Total", "method", "Order.Total", 26, 33),
        ("::Place#part1", "function", "Place", 35, 39),
        ("::Place#part2", "function", "Place", 40, 45),
    ],
    "rust": [
        ("::Order", "class", "Order", 1, 11),
        ("::Order#2+Order.new", "class", "Order, Order.new", 13, 17),
        ("::Order.add", "method", "Order.add", 19, 25),
        ("::Order#3", "class", "Order", 28, 32),
        ("::units_by_sku", "function", "units_by_sku", 34, 43),
    ],
    "java": [
        ("::OrderService+OrderService.OrderService", "class", "OrderService, OrderService.OrderService", 6, 15),
        ("::OrderService.add", "method", "OrderService.add", 17, 20),
        ("::OrderService.add#2", "method", "OrderService.add", 22, 28),
        ("::OrderService.toString", "method", "OrderService.toString", 30, 33),
    ],
    "typescript": [
        ("::Order", "class", "Order", 3, 8),
        ("::OrderService+OrderService.constructor", "class", "OrderService, OrderService.constructor", 10, 14),
        ("::OrderService.place", "method", "OrderService.place", 16, 24),
        ("::formatTotal", "function", "formatTotal", 27, 32),
    ],
    "tsx": [
        ("::Props", "class", "Props", 3, 3),
        ("::OrderSummary", "function", "OrderSummary", 5, 13),
    ],
    "javascript": [
        ("#L1-L3", "module", "", 1, 3),
        ("::Cart+Cart.constructor", "class", "Cart, Cart.constructor", 5, 12),
        ("::Cart.add", "method", "Cart.add", 14, 19),
        ("::Cart.size+Cart.clear", "method", "Cart.size, Cart.clear", 21, 22),
        ("::cartTotal", "function", "cartTotal", 25, 32),
        ("#L34-L34", "module", "", 34, 34),
    ],
}


def _summary(chunks: list[Chunk], path: str) -> list[tuple[str, str, str, int, int]]:
    assert all(c.id.startswith(path) for c in chunks)
    return [(c.id[len(path):], c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]


def _check_invariants(file: SourceFile, chunks: list[Chunk], max_tokens: int) -> None:
    lines = file.text.split("\n")
    ids = [c.id for c in chunks]
    assert len(ids) == len(set(ids)), "ids must be unique within a file"
    previous_end = 0
    for c in chunks:
        assert c.path == file.path and c.language == file.language
        assert previous_end < c.start_line <= c.end_line, "chunks are in line order and do not overlap"
        previous_end = c.end_line
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])
        assert c.sha256 == hashlib.sha256(c.text.encode()).hexdigest()
        assert c.tokens == count_tokens(c.text) <= max_tokens
        assert c.kind in ("function", "method", "class", "module", "window")


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_split_classes_give_header_and_method_chunks(language: str) -> None:
    file = sample(language)
    chunks = chunk_file(file, max_tokens=100, min_tokens=30)
    assert _summary(chunks, file.path) == SPLIT[language]
    _check_invariants(file, chunks, 100)


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_default_bounds_keep_small_classes_whole(language: str) -> None:
    file = sample(language)
    chunks = chunk_file(file)
    _check_invariants(file, chunks, 800)
    # every class-like definition fits 800 tokens, so no method chunk exists except Go's top-level methods
    kinds = {c.kind for c in chunks}
    assert "method" not in kinds or language == "go"
    assert not any("#part" in c.id for c in chunks)


def test_python_default_chunks() -> None:
    file = sample("python")
    assert _summary(chunk_file(file), file.path) == [
        ("#L1-L11", "module", "", 1, 11),
        ("::LineItem", "class", "LineItem", 14, 24),
        ("::OrderService", "class", "OrderService", 27, 60),
        ("::parse_sku+helper+helper#2", "function", "parse_sku, helper, helper", 63, 81),
    ]


def test_spans_include_decorators_annotations_and_doc_comments() -> None:
    by_id = {c.id: c for c in chunk_file(sample("python"))}
    assert by_id["shop/orders.py::LineItem"].text.startswith("@dataclass\nclass LineItem:")
    java = {c.id: c for c in chunk_file(sample("java"), max_tokens=100, min_tokens=30)}
    prefix = SOURCES["java"][0]
    assert java[prefix + "::OrderService.add"].text.startswith("    /** Adds one unit of a product. */\n")
    assert java[prefix + "::OrderService.toString"].text.startswith("    @Override\n")
    go = {c.id: c for c in chunk_file(sample("go"))}
    assert go["orders/orders.go::Order.Total"].text.startswith("// Total returns the sum")
    rust = {c.id: c for c in chunk_file(sample("rust"), max_tokens=100, min_tokens=30)}
    assert "/// Adds `quantity` units" in rust["src/order.rs::Order.add"].text.split("\n")[0]


def test_tiny_neighbours_merge_while_the_total_fits() -> None:
    text = "\n\n".join(f"export function get{n}(order) {{ return order.{n.lower()}; }}" for n in
                       ("Id", "Customer", "Total", "Status", "Created"))
    file = SourceFile("web/getters.js", "javascript", text + "\n", "")
    (merged,) = chunk_file(file)
    assert merged.id == "web/getters.js::getId+getCustomer+getTotal+getStatus+getCreated"
    assert merged.symbol == "getId, getCustomer, getTotal, getStatus, getCreated"
    assert (merged.kind, merged.start_line, merged.end_line) == ("function", 1, 9)
    # a smaller budget stops each group before it would exceed max_tokens
    groups = chunk_file(file, max_tokens=30, min_tokens=20)
    assert len(groups) > 1
    assert all(c.tokens <= 30 for c in groups)
    assert ", ".join(c.symbol for c in groups) == merged.symbol


def _long_function(lines: int) -> str:
    body = "\n".join(f"    total += compute_step_{i}(order, factor={i}, label='step {i}')" for i in range(lines))
    return f'def settle(order):\n    """Run every settlement step."""\n    total = 0\n{body}\n    return total\n'


def test_long_function_is_split_into_numbered_parts() -> None:
    text = "import math\n\n\n" + _long_function(300) + "\n\ndef after():\n    return math.pi\n"
    file = SourceFile("billing/settle.py", "python", text, "")
    chunks = chunk_file(file)
    parts = [c for c in chunks if c.symbol == "settle"]
    assert [c.id for c in parts] == [f"billing/settle.py::settle#part{n}" for n in range(1, len(parts) + 1)]
    assert len(parts) >= 5  # 304 lines at most 60 lines each
    assert all(c.kind == "function" and c.end_line - c.start_line < 60 for c in parts)
    assert parts[0].start_line == 4 and parts[-1].end_line == 307
    assert all(b.start_line == a.end_line + 1 for a, b in zip(parts, parts[1:])), "parts cover the function"
    assert chunks[-1].id == "billing/settle.py::after"
    _check_invariants(file, chunks, 800)


def test_parts_stay_under_max_tokens_when_lines_are_long() -> None:
    text = "func Long() {\n" + "".join(f'\tfmt.Println("{"x" * 200} {i}")\n' for i in range(40)) + "}\n"
    file = SourceFile("long.go", "go", text, "")
    chunks = chunk_file(file, max_tokens=200)
    assert len(chunks) > 2
    assert all(c.id == f"long.go::Long#part{i}" for i, c in enumerate(chunks, 1))
    _check_invariants(file, chunks, 200)


def test_text_files_fall_back_to_line_windows() -> None:
    yaml = "".join(f"key_{i}: value {i}\n" for i in range(130))
    file = SourceFile("config/settings.yaml", "text", yaml, "")
    chunks = chunk_file(file)
    _check_invariants(file, chunks, 800)
    assert all(c.kind == "window" and c.symbol == "" for c in chunks)
    assert [c.id for c in chunks] == [f"config/settings.yaml#L{c.start_line}-L{c.end_line}" for c in chunks]
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 130
    assert all(b.start_line == a.end_line + 1 for a, b in zip(chunks, chunks[1:])), "windows cover the file"
    # at most window_lines lines, and no window shorter than a third of it: 130 lines make 3 to 5 windows
    assert all(20 <= c.end_line - c.start_line + 1 <= 60 for c in chunks)
    assert 3 <= len(chunks) <= 5
    markdown = "# Shop\n\n" + "\n\n".join(f"## Section {i}\n\n" + "Some prose about orders. " * 30 for i in range(12))
    file = SourceFile("docs/guide.md", "text", markdown, "")
    windows = chunk_file(file, max_tokens=300)
    _check_invariants(file, windows, 300)
    assert all(c.kind == "window" and c.id == f"docs/guide.md#L{c.start_line}-L{c.end_line}" for c in windows)
    covered = {line for c in windows for line in range(c.start_line, c.end_line + 1)}
    text_lines = markdown.split("\n")
    assert all(i + 1 in covered for i, line in enumerate(text_lines) if line.strip()), "no text is lost"


def test_overlong_single_line_is_sliced_with_unique_ids() -> None:
    minified = "var a=" + "+".join(f"f{i}(x{i})" for i in range(3000)) + ";\n"
    file = SourceFile("dist/app.min.js", "text", minified, "")
    chunks = chunk_file(file, max_tokens=500)
    assert len(chunks) > 3
    assert len({c.id for c in chunks}) == len(chunks)
    assert all(c.tokens <= 500 and c.start_line == c.end_line == 1 for c in chunks)
    assert "".join(c.text for c in chunks) == minified.rstrip("\n")


def test_unparseable_code_falls_back_to_windows() -> None:
    file = SourceFile("broken.py", "python", "x = (\n\ndef f():\n    return 1\n", "")
    chunks = chunk_file(file)
    assert [(c.id, c.kind) for c in chunks] == [("broken.py#L1-L4", "window")]


def test_output_is_deterministic() -> None:
    files = [sample(language) for language in sorted(SOURCES)]
    first = json.dumps([c.to_dict() for c in chunk_files(files, max_tokens=100, min_tokens=30)])
    outline.cache_clear()  # parse again rather than reuse the cached outlines
    second = json.dumps([c.to_dict() for c in chunk_files(files, max_tokens=100, min_tokens=30)])
    assert first == second
    assert [Chunk.from_dict(d) for d in json.loads(first)] == chunk_files(files, max_tokens=100, min_tokens=30)


def test_duplicate_names_get_numbered_ids() -> None:
    ids = [c.id for c in chunk_file(sample("java"), max_tokens=100, min_tokens=30)]
    prefix = SOURCES["java"][0]
    assert prefix + "::OrderService.add" in ids and prefix + "::OrderService.add#2" in ids
    text = "".join(f"def handler(event):\n    '''Version {i} of the handler, kept for replay.'''\n"
                   f"    return dispatch(event, version={i}, retries=3, timeout=30.0)\n\n\n" for i in range(3))
    python_ids = [c.id for c in chunk_file(SourceFile("h.py", "python", text, ""), min_tokens=0)]
    assert python_ids == ["h.py::handler", "h.py::handler#2", "h.py::handler#3"]


def test_chunk_files_concatenates_in_file_order() -> None:
    files = [sample("rust"), sample("go")]
    chunks = chunk_files(files, max_tokens=100, min_tokens=30)
    assert chunks == chunk_file(files[0], max_tokens=100, min_tokens=30) + chunk_file(files[1], max_tokens=100,
                                                                                   min_tokens=30)
    assert chunk_files([]) == []


def test_bad_bounds_are_rejected() -> None:
    with pytest.raises(ValueError):
        chunk_file(sample("python"), max_tokens=0)


def test_real_stdlib_json_package() -> None:
    package = Path(json.__file__).parent
    files = [
        SourceFile(f"json/{p.name}", "python", p.read_text(encoding="utf-8"), "")
        for p in sorted(package.glob("*.py"))
    ]
    chunks = chunk_files(files)
    assert len({c.id for c in chunks}) == len(chunks)
    for file in files:
        own = [c for c in chunks if c.path == file.path]
        _check_invariants(file, own, 800)
        # every top-level definition (found independently with ast) lies in a chunk that names it
        for node in ast.parse(file.text).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                holders = [c for c in own if c.start_line <= node.lineno <= c.end_line]
                assert len(holders) == 1, (file.path, node.name)
                names = {part for symbol in holders[0].symbol.split(", ") for part in symbol.split(".")}
                assert node.name in names, (file.path, node.name, holders[0].id)
    by_id = {c.id: c for c in chunks}
    assert by_id["json/__init__.py::dumps"].kind == "function"
    assert by_id["json/__init__.py::dumps"].text.startswith("def dumps(obj, *, skipkeys=False")
