"""Small but realistic source files, one per supported language, shared by the chunk and skeleton tests."""

from __future__ import annotations

from codefactory.models import SourceFile

PYTHON = '''\
"""Order placement and tracking for the shop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

log = logging.getLogger(__name__)

TAX_RATE = Decimal("0.2")


@dataclass
class LineItem:
    """One product line in an order."""

    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity


class OrderService:
    """Places orders and keeps track of their status.

    The repository stores orders; the notifier tells customers what happened.
    """

    retries = 3

    def __init__(self, repo, notifier) -> None:
        self.repo = repo
        self.notifier = notifier

    # Validation happens before anything is stored.
    def place(self, customer_id: str, items: list[LineItem]) -> str:
        """Validate, price and store a new order; return its id."""
        if not items:
            raise ValueError("an order needs at least one item")
        subtotal = sum((item.total for item in items), Decimal(0))
        order_id = self.repo.insert(customer_id, items, subtotal * (1 + TAX_RATE))
        self.notifier.send(customer_id, f"order {order_id} placed")
        log.info("placed order %s for %s", order_id, customer_id)
        return order_id

    def cancel(self, order_id: str, reason: str = "") -> bool:
        """Cancel an order that has not shipped yet."""
        order = self.repo.get(order_id)
        if order is None or order.status == "shipped":
            return False
        self.repo.update(order_id, status="cancelled", reason=reason)
        self.notifier.send(order.customer_id, f"order {order_id} cancelled")
        return True

    def status(self, order_id): return self.repo.status(order_id)
    def count(self): return self.repo.count()


def parse_sku(text: str) -> tuple[str, int]:
    """Split 'ABC-12' into its family and number."""
    family, _, number = text.strip().upper().partition("-")
    if not family or not number.isdigit():
        raise ValueError(f"bad SKU: {text!r}")
    return family, int(number)


def helper(value):
    return value


def helper(value):
    return value * 2


if __name__ == "__main__":
    service = OrderService(repo=None, notifier=None)
    print(parse_sku("abc-12"), service.retries)
'''

GO = '''\
// Package orders places and tracks customer orders.
package orders

import (
	"errors"
	"fmt"
)

// ErrEmpty is returned when an order has no items.
var ErrEmpty = errors.New("orders: empty order")

// Order is a customer order with its line items.
type Order struct {
	ID       string
	Customer string
	Items    []Item
	Status   string
}

// Store persists orders.
type Store interface {
	Save(o *Order) error
	Get(id string) (*Order, error)
}

// Total returns the sum of all line items in cents.
func (o *Order) Total() int64 {
	var total int64
	for _, item := range o.Items {
		total += item.Price * int64(item.Quantity)
	}
	return total
}

// Place validates and stores a new order.
func Place(store Store, customer string, items []Item) (*Order, error) {
	if len(items) == 0 {
		return nil, ErrEmpty
	}
	order := &Order{ID: fmt.Sprintf("%s-%d", customer, len(items)), Customer: customer, Items: items}
	if err := store.Save(order); err != nil {
		return nil, fmt.Errorf("orders: save %s: %w", order.ID, err)
	}
	return order, nil
}
'''

RUST = '''\
//! Order handling for the shop.
use std::collections::HashMap;
use std::fmt;

/// A customer order.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: u64,
    pub customer: String,
    pub items: Vec<(String, u32)>,
}

impl Order {
    /// Creates an empty order for `customer`.
    pub fn new(id: u64, customer: &str) -> Self {
        Order { id, customer: customer.to_string(), items: Vec::new() }
    }

    /// Adds `quantity` units of `sku`, merging with an existing line.
    pub fn add(&mut self, sku: &str, quantity: u32) {
        match self.items.iter_mut().find(|(s, _)| s == sku) {
            Some(line) => line.1 += quantity,
            None => self.items.push((sku.to_string(), quantity)),
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {} for {} ({} lines)", self.id, self.customer, self.items.len())
    }
}

/// Counts units per SKU across many orders.
pub fn units_by_sku(orders: &[Order]) -> HashMap<String, u32> {
    let mut units = HashMap::new();
    for order in orders {
        for (sku, quantity) in &order.items {
            *units.entry(sku.clone()).or_insert(0) += quantity;
        }
    }
    units
}
'''

JAVA = '''\
package com.shop.orders;

import java.util.ArrayList;
import java.util.List;

/**
 * Places orders and keeps their line items.
 */
public class OrderService {
    private final List<String> lines = new ArrayList<>();
    private final OrderRepository repository;

    public OrderService(OrderRepository repository) {
        this.repository = repository;
    }

    /** Adds one unit of a product. */
    public void add(String sku) {
        add(sku, 1);
    }

    /** Adds several units of a product. */
    public void add(String sku, int quantity) {
        if (quantity <= 0) {
            throw new IllegalArgumentException("quantity must be positive: " + quantity);
        }
        lines.add(sku + " x" + quantity);
    }

    @Override
    public String toString() {
        return "OrderService" + lines;
    }
}
'''

TYPESCRIPT = '''\
import { Repository } from "./repository";

/** A placed order. */
export interface Order {
  id: string;
  customer: string;
  total: number;
}

/**
 * Places orders through a repository.
 */
export class OrderService {
  constructor(private readonly repo: Repository<Order>) {}

  /** Places an order after validating its total. */
  async place(customer: string, total: number): Promise<Order> {
    if (total <= 0) {
      throw new Error(`invalid total ${total} for ${customer}`);
    }
    const order = { id: crypto.randomUUID(), customer, total };
    await this.repo.save(order);
    return order;
  }
}

// Formats a total in euros for display.
export const formatTotal = (total: number): string => {
  const euros = Math.floor(total / 100);
  const cents = String(total % 100).padStart(2, "0");
  return `${euros}.${cents} EUR`;
};
'''

TSX = '''\
import React from "react";

type Props = { total: number; onPay: () => void };

/** Shows the order total and a pay button. */
export function OrderSummary({ total, onPay }: Props) {
  const label = total > 0 ? `Pay ${total / 100} EUR` : "Nothing to pay";
  return (
    <div className="summary">
      <button disabled={total <= 0} onClick={onPay}>{label}</button>
    </div>
  );
}
'''

JAVASCRIPT = '''\
'use strict';

const { EventEmitter } = require('events');

/**
 * Keeps a cart of products and emits "change" on every update.
 */
class Cart extends EventEmitter {
  constructor() {
    super();
    this.items = new Map();
  }

  // Adds quantity units of a product to the cart.
  add(sku, quantity = 1) {
    const current = this.items.get(sku) || 0;
    this.items.set(sku, current + quantity);
    this.emit('change', { sku, quantity: current + quantity });
  }

  get size() { return this.items.size; }
  clear() { this.items.clear(); }
}

/** Sums the cart with the given price table. */
function cartTotal(cart, prices) {
  let total = 0;
  for (const [sku, quantity] of cart.items) {
    total += (prices[sku] || 0) * quantity;
  }
  return total;
}

module.exports = { Cart, cartTotal };
'''

SOURCES: dict[str, tuple[str, str]] = {
    "python": ("shop/orders.py", PYTHON),
    "go": ("orders/orders.go", GO),
    "rust": ("src/order.rs", RUST),
    "java": ("src/main/java/com/shop/orders/OrderService.java", JAVA),
    "typescript": ("web/orderService.ts", TYPESCRIPT),
    "tsx": ("web/OrderSummary.tsx", TSX),
    "javascript": ("web/cart.js", JAVASCRIPT),
}


def sample(language: str) -> SourceFile:
    """The sample file for `language` as the scan would hand it over."""
    path, text = SOURCES[language]
    return SourceFile(path=path, language=language, text=text, blob_sha="0" * 40)
