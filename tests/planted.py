"""A small real repository and a scripted model that plants bad samples among good ones.

The scripted server answers Scene-1 requests about `InvoiceService` with PLANTED pairs (one per
kind of defect, each recognisable by its question), design proposal #2 with one that "adds" a class
the project already has, and everything else with its default grounded replies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from codefactory import pipeline
from codefactory.config import load_config
from codefactory.gitrepo import GitRepo
from tests.gitrepos import make_repo
from tests.servers import ScriptedServer, _schema_of, _variant, _words, synthesize

INVOICES = '''"""Invoices: issuing, paying and voiding, with every movement posted to the ledger."""

from dataclasses import dataclass

LATE_FEE = 15.0


@dataclass
class Invoice:
    number: str
    customer: str
    amount: float
    status: str = "open"


class InvoiceService:
    """Issues invoices and keeps the ledger in step with their status."""

    def __init__(self, ledger):
        self.ledger = ledger

    def issue(self, number: str, customer: str, amount: float) -> Invoice:
        """Create an open invoice and post the receivable."""
        if amount <= 0:
            raise ValueError("an invoice needs a positive amount")
        invoice = Invoice(number, customer, amount)
        self.ledger.post(customer, amount)
        return invoice

    def pay(self, invoice: Invoice, overdue: bool = False) -> Invoice:
        """Mark the invoice paid; an overdue payment adds the LATE_FEE to the ledger."""
        if overdue:
            self.ledger.post(invoice.customer, LATE_FEE)
        invoice.status = "paid"
        return invoice

    def void(self, invoice: Invoice) -> Invoice:
        """Cancel an invoice; a paid one is refunded through the ledger first."""
        if invoice.status == "paid":
            self.ledger.post(invoice.customer, -invoice.amount)
        invoice.status = "void"
        return invoice
'''

LEDGER = '''"""Per-customer balances."""


class Ledger:
    def __init__(self):
        self.balances: dict[str, float] = {}

    def post(self, customer: str, amount: float) -> None:
        """Add amount (negative for refunds) to the customer's balance."""
        self.balances[customer] = self.balances.get(customer, 0.0) + amount

    def balance(self, customer: str) -> float:
        return self.balances.get(customer, 0.0)
'''

FILES = {"billing/invoices.py": INVOICES, "billing/ledger.py": LEDGER, "README.md": "# billing\n\nInvoices and a ledger.\n"}

GOOD_TRACE = ("First, `void` reads `invoice.status`. If it is paid, it calls `self.ledger.post` with the negative "
              "`invoice.amount`. Then it sets the status to void. So a paid invoice is refunded before it is voided.")
GOOD_ANSWER = ("`InvoiceService.void` posts the negative amount to the ledger through `Ledger.post` when the invoice "
               "was paid, and then marks the invoice as void, so the customer's balance is refunded.")


def pair(question: str, answer: str = GOOD_ANSWER, trace: str = GOOD_TRACE) -> dict[str, str]:
    return {"question": question, "thinking_trace": trace, "answer": answer}


# What each planted pair should become, by its question.
PLANTED: dict[str, tuple[dict[str, str], str | None]] = {
    "good": (pair("What happens to the ledger when InvoiceService.void is called on a paid invoice?"), None),
    "good2": (pair("Why does InvoiceService.pay post the LATE_FEE only for overdue invoices?",
                   "`InvoiceService.pay` calls `self.ledger.post` with `LATE_FEE` only when `overdue` is true, "
                   "because the fee is a penalty for late payment; on time payments just set the status to paid.",
                   "First, `pay` checks the `overdue` flag. If it is set, `self.ledger.post` receives `LATE_FEE` "
                   "for `invoice.customer`. Then the status becomes paid. So only late payers are charged."), None),
    "empty": (pair("What does InvoiceService.issue return for a valid amount?", " " * 24), "empty"),
    "placeholder": (pair("How does InvoiceService.issue validate the amount?",
                         "TODO: describe how `issue` validates the amount here."), "placeholder"),
    "lorem": (pair("What is stored in the Invoice dataclass by default?",
                   "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod."), "placeholder"),
    "refusal": (pair("What does InvoiceService do with a refund when voiding?",
                     "As an AI language model, I cannot determine what this code does."), "refusal"),
    "hallucinated": (pair("Which steps does InvoiceService.issue take to charge a customer?",
                          "`InvoiceService.issue` calls `PaymentGateway.capture_funds` and then `send_receipt_email` "
                          "to finish the charge."), "unknown_identifiers"),
    "ungrounded": (pair("Is the voiding behaviour of this service safe for customers?",
                        "Yes, it makes sure everything is handled correctly and consistently for everybody."),
                   "ungrounded"),
    "restates": (pair("What does `self.ledger.post(invoice.customer, -invoice.amount)` do?"), "restates_code"),
    "shallow": (pair("What does InvoiceService.void change on the invoice object?",
                     trace="It voids the invoice and that is really all there is to say about it here"),
                "shallow_trace"),
    "language": (pair("How would InvoiceService.void be written elsewhere?",
                      "In JavaScript one would write the same `void` method; here `InvoiceService.void` "
                      "posts the refund to the ledger."), "language_mismatch"),
    "duplicate": (pair("What happens to the ledger when InvoiceService.void is called on a PAID invoice"), "duplicate"),
    "near_duplicate": (pair("What happens to the ledger when InvoiceService.void is called on an already paid invoice?"),
                       "near_duplicate"),
}

EXISTING_CLASS_PROPOSAL = {
    "requirement": "Finance wants every invoice movement to be reconciled against customer balances every night.",
    "thinking_trace": ("First, InvoiceService posts every movement to the ledger. Then a nightly job can compare "
                       "invoices with balances. So reconciliation needs a place that keeps balances per customer."),
    "proposal": {
        "summary": "Reconcile invoices and balances every night with a new ledger component.",
        "api_changes": ["Add a new `Ledger` class that stores balances per customer.",
                        "Expose a reconcile() entry point on InvoiceService."],
        "domain_model": ["Add a ReconciliationRun record with its date and mismatches."],
        "data_storage": ["Store reconciliation runs in a new table keyed by date."],
        "workflow": ["A nightly job loads open invoices.", "It compares them with ledger balances and records mismatches."],
        "risks": ["Large ledgers make the nightly job slow."],
    },
}


def responder(server: ScriptedServer, planted: dict[str, tuple[dict[str, str], str | None]] = PLANTED) -> Any:
    """Scene-1 replies about InvoiceService carry the planted pairs; proposal #2 reinvents `Ledger`."""

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        schema = _schema_of(request.get("response_format") or {})
        user = next(m["content"] for m in reversed(request["messages"]) if m["role"] == "user")
        reply = synthesize(schema, _words(request["messages"]), seed=_variant(request))
        if "pairs" in reply and "Symbol: InvoiceService\n" in user:
            count = len(reply["pairs"])
            pairs = [p for p, _ in planted.values()]
            reply["pairs"] = (pairs * count)[:count]
        elif "proposal" in reply and "Design proposal #2 " in user:
            reply = json.loads(json.dumps(EXISTING_CLASS_PROPOSAL))
        return reply

    server.responder = respond
    return respond


def workspace(root: Path, server: ScriptedServer, **flags: Any) -> pipeline.Workspace:
    base = {"base_url": server.base_url, "model": "scripted-model", "out": str(root / "data")}
    config = load_config(root, flags={**base, **flags}, environ={})
    return pipeline.Workspace(repo=GitRepo(root), config=config, progress=False)


def billing_repo(tmp_path: Path) -> Path:
    make_repo(tmp_path / "billing", FILES)
    return tmp_path / "billing"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ids_by_question(out: Path) -> dict[str, str]:
    """Planted name -> sample id, from the raw log."""
    by_question = {p["question"].strip(): name for name, (p, _) in PLANTED.items()}
    found = {}
    for record in read_jsonl(out / "scene1_raw.jsonl"):
        name = by_question.get(record["question"])
        if name and name not in found:
            found[name] = record["id"]
    return found


def plant_count() -> int:
    return len(PLANTED)


def question_of(name: str) -> str:
    return re.sub(r"\s+", " ", PLANTED[name][0]["question"]).strip()
