"""Project skeleton: signatures and doc lines per language, centrality, budget fitting (SPEC §3)."""

from __future__ import annotations

import json
import re

import pytest

from codefactory.dirtree import render_tree
from codefactory.models import SourceFile
from codefactory.skeleton import FileSymbols, build_skeleton, extract_symbols
from codefactory.tokens import count_tokens
from tests.code_samples import SOURCES, sample

# (kind, qualified name, signature, doc, line) for every definition of each sample
SYMBOLS = {
    "python": [
        ("class", "LineItem", "class LineItem", "One product line in an order.", 15),
        ("method", "LineItem.total", "def total(self) -> Decimal", "", 23),
        ("class", "OrderService", "class OrderService", "Places orders and keeps track of their status.", 27),
        ("method", "OrderService.__init__", "def __init__(self, repo, notifier) -> None", "", 35),
        ("method", "OrderService.place", "def place(self, customer_id: str, items: list[LineItem]) -> str",
         "Validate, price and store a new order; return its id.", 40),
        ("method", "OrderService.cancel", 'def cancel(self, order_id: str, reason: str = "") -> bool',
         "Cancel an order that has not shipped yet.", 50),
        ("method", "OrderService.status", "def status(self, order_id)", "", 59),
        ("method", "OrderService.count", "def count(self)", "", 60),
        ("function", "parse_sku", "def parse_sku(text: str) -> tuple[str, int]",
         "Split 'ABC-12' into its family and number.", 63),
        ("function", "helper", "def helper(value)", "", 71),
        ("function", "helper", "def helper(value)", "", 75),
    ],
    "go": [
        ("class", "Order", "type Order struct", "Order is a customer order with its line items.", 13),
        ("class", "Store", "type Store interface", "Store persists orders.", 21),
        ("method", "Order.Total", "func (o *Order) Total() int64", "Total returns the sum of all line items in cents.", 27),
        ("function", "Place", "func Place(store Store, customer string, items []Item) (*Order, error)",
         "Place validates and stores a new order.", 36),
    ],
    "rust": [
        ("class", "Order", "pub struct Order", "A customer order.", 7),
        ("class", "Order", "impl Order", "", 13),
        ("method", "Order.new", "pub fn new(id: u64, customer: &str) -> Self", "Creates an empty order for `customer`.", 15),
        ("method", "Order.add", "pub fn add(&mut self, sku: &str, quantity: u32)",
         "Adds `quantity` units of `sku`, merging with an existing line.", 20),
        ("class", "Order", "impl fmt::Display for Order", "", 28),
        ("method", "Order.fmt", "fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result", "", 29),
        ("function", "units_by_sku", "pub fn units_by_sku(orders: &[Order]) -> HashMap<String, u32>",
         "Counts units per SKU across many orders.", 35),
    ],
    "java": [
        ("class", "OrderService", "public class OrderService", "Places orders and keeps their line items.", 9),
        ("method", "OrderService.OrderService", "public OrderService(OrderRepository repository)", "", 13),
        ("method", "OrderService.add", "public void add(String sku)", "Adds one unit of a product.", 18),
        ("method", "OrderService.add", "public void add(String sku, int quantity)", "Adds several units of a product.", 23),
        ("method", "OrderService.toString", "@Override public String toString()", "", 30),
    ],
    "typescript": [
        ("class", "Order", "interface Order", "A placed order.", 4),
        ("class", "OrderService", "class OrderService", "Places orders through a repository.", 13),
        ("method", "OrderService.constructor", "constructor(private readonly repo: Repository<Order>)", "", 14),
        ("method", "OrderService.place", "async place(customer: string, total: number): Promise<Order>",
         "Places an order after validating its total.", 17),
        ("function", "formatTotal", "const formatTotal = (total: number): string =>",
         "Formats a total in euros for display.", 28),
    ],
    "tsx": [
        ("class", "Props", "type Props = { total: number; onPay: () => void }", "", 3),
        ("function", "OrderSummary", "function OrderSummary({ total, onPay }: Props)",
         "Shows the order total and a pay button.", 6),
    ],
    "javascript": [
        ("class", "Cart", "class Cart extends EventEmitter",
         'Keeps a cart of products and emits "change" on every update.', 8),
        ("method", "Cart.constructor", "constructor()", "", 9),
        ("method", "Cart.add", "add(sku, quantity = 1)", "Adds quantity units of a product to the cart.", 15),
        ("method", "Cart.size", "get size()", "", 21),
        ("method", "Cart.clear", "clear()", "", 22),
        ("function", "cartTotal", "function cartTotal(cart, prices)", "Sums the cart with the given price table.", 26),
    ],
}


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_signatures_and_doc_lines(language: str) -> None:
    symbols = extract_symbols(sample(language))
    assert (symbols.path, symbols.language) == (SOURCES[language][0], language)
    assert [(s.kind, s.name, s.signature, s.doc, s.line) for s in symbols.symbols] == SYMBOLS[language]


def test_text_files_have_no_symbols() -> None:
    assert extract_symbols(SourceFile("README.md", "text", "# Shop\n\ndef not_code():\n", "")).symbols == []


def test_multiline_signature_is_one_line() -> None:
    text = 'async def fetch(\n    url: str,\n    *,\n    timeout: float = 1.0,\n) -> bytes:\n    """Fetch a URL."""\n'
    (symbol,) = extract_symbols(SourceFile("net.py", "python", text, "")).symbols
    assert symbol.signature == "async def fetch(url: str, *, timeout: float = 1.0) -> bytes"
    assert symbol.doc == "Fetch a URL."


def _all_samples() -> list[SourceFile]:
    readme = SourceFile("README.md", "text", "# Shop\n\nSells things.\n", "")
    return [sample(language) for language in sorted(SOURCES)] + [readme]


def test_text_has_tree_then_sections_sorted_by_path() -> None:
    skeleton = build_skeleton(_all_samples(), repo_name="shop")
    text = skeleton.to_text()
    assert text.startswith("Directory tree:\nshop/\n")
    assert "  src/\n    main/java/com/shop/orders/\n      OrderService.java\n    order.rs\n" in text
    assert "  README.md\n" in text  # files without symbols still show in the tree
    headers = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headers == sorted(SOURCES[language][0] for language in SOURCES)
    assert "class OrderService — Places orders and keeps track of their status.\n" \
           "  def __init__(self, repo, notifier) -> None\n" in text
    assert "func (o *Order) Total() int64 — Total returns the sum of all line items in cents.\n" in text
    assert skeleton.omitted == []
    assert skeleton.token_count == count_tokens(text)


def test_slice_returns_only_the_named_sections() -> None:
    skeleton = build_skeleton(_all_samples())
    part = skeleton.slice(["web/cart.js", "orders/orders.go", "not/there.py"])
    assert part.startswith("## orders/orders.go\n")
    assert "\n## web/cart.js\nclass Cart extends EventEmitter" in part
    assert "shop/orders.py" not in part and "Directory tree" not in part
    assert skeleton.slice([]) == ""


def test_to_dict_is_json_and_deterministic() -> None:
    first = build_skeleton(_all_samples(), repo_name="shop")
    second = build_skeleton(list(reversed(_all_samples())), repo_name="shop")
    assert json.dumps(first.to_dict()) == json.dumps(second.to_dict())
    assert first.to_text() == second.to_text()
    data = first.to_dict()
    assert set(data) == {"tree", "files", "centrality", "token_count", "omitted"}
    assert data["files"][0]["path"] == "orders/orders.go"
    assert data["files"][0]["symbols"][0] == {"kind": "class", "name": "Order", "signature": "type Order struct",
                                              "doc": "Order is a customer order with its line items.", "line": 13}


def _project() -> list[SourceFile]:
    """core/models.py is imported by four modules, core/money.py by one; main.py is the entry point."""
    models = 'class Customer:\n    """A buyer."""\n\n\nclass Invoice:\n    """What a customer owes."""\n'
    money = 'def to_cents(amount):\n    """Euros to cents."""\n    return round(amount * 100)\n'
    files = {
        "core/models.py": models,
        "core/money.py": money,
        "billing/invoices.py": "from core.models import Invoice\nfrom core.money import to_cents\n\n\n"
                               "def total(invoice: Invoice):\n    return to_cents(invoice.amount)\n",
        "billing/reminders.py": "from core.models import Customer\n\n\ndef remind(customer: Customer):\n"
                                "    return customer.email\n",
        "shop/cart.py": "from core import models\n\n\ndef owner(cart) -> models.Customer:\n    return cart.owner\n",
        "shop/checkout.py": "from core.models import Customer, Invoice\n\n\ndef checkout(c: Customer) -> Invoice:\n"
                            "    return Invoice()\n",
        "main.py": "from shop.checkout import checkout\n\n\ndef main():\n    checkout(None)\n",
        "notes/models.txt": "The word models appears here, and money too, but this is not code.\n",
    }
    return [SourceFile(path, "text" if path.endswith(".txt") else "python", text, "") for path, text in files.items()]


def test_centrality_ranks_the_most_imported_module_first() -> None:
    centrality = build_skeleton(_project()).centrality
    ranked = sorted(centrality, key=lambda path: (-centrality[path], path))
    assert ranked[0] == "core/models.py"
    assert centrality["core/models.py"] == 1.0
    assert centrality["core/models.py"] > centrality["core/money.py"] > centrality["billing/invoices.py"]
    assert centrality["main.py"] == pytest.approx(0.1)  # nobody imports it: the entry-point bonus alone
    assert centrality["billing/reminders.py"] == 0.0


def test_numbers_are_not_references_to_modules() -> None:
    files = [SourceFile("data/2024.py", "python", "def report():\n    return 1\n", ""),
             SourceFile("util/x1F.py", "python", "def mask():\n    return 2\n", ""),
             SourceFile("lib/helpers.py", "python", "def helper():\n    return 3\n", ""),
             SourceFile("app.py", "python", "import helpers\n\nYEAR = 2024  # of the report\n"
                                            "MASK = 0x1F  # the mask\nhelpers.helper()\n", "")]
    centrality = build_skeleton(files).centrality
    assert centrality["lib/helpers.py"] == 1.0
    # Each named with one of its symbols, which would count 0.5 if these numbers were names.
    assert centrality["data/2024.py"] == 0.0, "the number 2024 is not the module 2024"
    assert centrality["util/x1F.py"] == 0.0, "0x1F is a number, not the module x1F"


def test_budget_keeps_central_files_and_lists_the_rest_as_omitted() -> None:
    files = _project()
    full = build_skeleton(files)
    assert full.omitted == []
    budget = full.token_count - 25  # too small for every section
    fitted = build_skeleton(files, token_budget=budget)
    assert fitted.token_count <= budget
    assert fitted.token_count == count_tokens(fitted.to_text())
    assert fitted.omitted, "something had to go"
    assert "core/models.py" not in fitted.omitted
    text = fitted.to_text()
    assert "## core/models.py\nclass Customer — A buyer.\n" in text
    for path in fitted.omitted:
        assert f"## {path}\n" not in text
        assert fitted.slice([path]).startswith(f"## {path}\n")  # still available to Scene-2 prompts
    assert f"({len(fitted.omitted)} more files' symbols omitted to fit the token budget)" in text
    assert [f.path for f in fitted.files] == [f.path for f in full.files]


def test_large_tree_is_collapsed_to_fit() -> None:
    paths = [f"src/pkg{p}/sub{s}/module_{m}.py" for p in range(8) for s in range(5) for m in range(10)]
    paths += [f"tests/test_{m}.py" for m in range(30)] + ["setup.py"]
    full = render_tree(paths, root="big", token_budget=100_000)
    assert len(full.splitlines()) == 1 + 2 + 8 + 40 + 400 + 30 + 1
    # the deepest directories go first: sub*/ folds before pkg*/, the shallow tests/ stays listed
    tree = render_tree(paths, root="big", token_budget=1000)
    assert count_tokens(tree) <= 1000
    assert "      sub0/ (10 files)\n" in tree and "(50 files)" not in tree
    assert "  tests/\n    test_0.py\n" in tree
    tree = render_tree(paths, root="big", token_budget=300)
    assert count_tokens(tree) <= 300
    assert tree.count("/ (50 files)\n") == 8 and "(10 files)" not in tree
    assert tree.splitlines()[-1] == "  setup.py"
    files = [SourceFile(path, "python", "def f():\n    pass\n", "") for path in paths]
    skeleton = build_skeleton(files, token_budget=800, repo_name="big")
    assert skeleton.token_count <= 800
    assert len(skeleton.omitted) > 400


def test_tree_cut_short_when_even_collapsed_it_is_too_big() -> None:
    paths = [f"file_{i:04d}.py" for i in range(500)]
    tree = render_tree(paths, token_budget=200)
    assert count_tokens(tree) <= 200
    assert tree.splitlines()[-1].startswith("… (") and tree.splitlines()[-1].endswith(" more entries)")


def test_file_symbols_section_format() -> None:
    section = FileSymbols("a.py", "python", extract_symbols(sample("python")).symbols[:2]).section
    assert section == "## a.py\nclass LineItem — One product line in an order.\n  def total(self) -> Decimal"


@pytest.mark.parametrize(
    ("language", "text", "names"),
    [
        ("rust", "#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn totals_add_up() {\n"
                 "        assert_eq!(2 + 2, 4);\n    }\n}\n", ["tests", "tests.totals_add_up"]),
        ("java", "enum Status {\n    OPEN, CLOSED;\n\n    boolean isFinal() { return this == CLOSED; }\n}\n",
         ["Status", "Status.isFinal"]),
        ("typescript", "namespace Pricing {\n  export function net(gross: number) { return gross / 1.2; }\n}\n"
                       "class Cart {\n  @observable\n  items: string[] = [];\n  onClear = () => { this.items = []; };\n}\n",
         ["Pricing", "Pricing.net", "Cart", "Cart.onClear"]),
        ("python", "class Outer:\n    class Inner:\n        def deep(self):\n            def local():\n"
                   "                pass\n", ["Outer", "Outer.Inner", "Outer.Inner.deep"]),
        ("go", "type (\n\tA int\n\tB string\n)\n\ntype ID = string\n\nfunc (s *Server[T]) Serve() {}\n",
         ["ID", "Server.Serve"]),
    ],
)
def test_nested_definitions_get_qualified_names(language: str, text: str, names: list[str]) -> None:
    symbols = extract_symbols(SourceFile("x", language, text, "")).symbols
    assert [s.name for s in symbols] == names


def test_a_files_words_are_its_runs_of_identifier_characters() -> None:
    from codefactory.skeleton import _words

    text = ("9abc 12 x _ __init__ a1 1a2b été_ok naïve λx \ud800surrogate_name o'reilly x2y3\n"
            "import os.path as p  # 0x1F 3rd 42nd __ _a a_ \t\u00a0tab\x00nul")
    words = _words(text).split("\n")
    assert sorted(words) == sorted(set(re.findall(r"[A-Za-z0-9_]+", text)))
    assert {"9abc", "12", "x", "_", "__init__", "1a2b", "_ok", "surrogate_name", "os", "x2y3", "0x1F"} <= set(words)
    assert _words("") == "" and _words("-- ++ ==") == ""


