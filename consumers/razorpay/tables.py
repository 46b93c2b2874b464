"""The ledger's entity tables and what a handler asks of them: `Table` (a state machine and its
columns), `EntityUpdate` (what one event says about one entity), `AppliedEvent` (the webhook
being applied, whose id makes the apply idempotent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .states import (
    DISPUTE,
    ORDER,
    PAYMENT,
    REFUND,
    SETTLEMENT,
    SUBSCRIPTION,
    StateMachine,
    Versioned,
)


@dataclass(frozen=True, slots=True)
class Table:
    """One entity table: its state machine and its columns besides id and status."""

    name: str
    entity: str
    """The Razorpay entity name (``payload.<entity>.entity``)."""
    machine: StateMachine
    facts: tuple[str, ...]
    """Columns whose first known value is kept."""
    status_facts: tuple[str, ...] = ()
    """Columns that describe the current status: written when the status is."""


PAYMENTS = Table("payments", "payment", PAYMENT,
                 ("order_id", "amount", "currency", "method", "created_at"),
                 ("error_code", "error_description"))
REFUNDS = Table("refunds", "refund", REFUND,
                ("payment_id", "amount", "currency", "created_at"), ("speed_processed",))
ORDERS = Table("orders", "order", ORDER,
               ("amount", "currency", "receipt", "created_at"), ("amount_paid",))
SUBSCRIPTIONS = Table("subscriptions", "subscription", SUBSCRIPTION,
                      ("plan_id", "customer_id", "total_count", "created_at"),
                      ("paid_count", "current_end"))
SETTLEMENTS = Table("settlements", "settlement", SETTLEMENT,
                    ("amount", "fees", "tax", "utr", "created_at"))
DISPUTES = Table("disputes", "dispute", DISPUTE,
                 ("payment_id", "amount", "currency", "reason_code", "created_at"),
                 ("phase", "respond_by"))
TABLES = (PAYMENTS, REFUNDS, ORDERS, SUBSCRIPTIONS, SETTLEMENTS, DISPUTES)

INTEGER_COLUMNS = frozenset({
    "amount", "amount_paid", "fees", "tax", "created_at", "current_end", "respond_by",
    "paid_count", "total_count",
})
"""Entity columns holding integers (amounts in the smallest unit, unix seconds, counts)."""


@dataclass(frozen=True, slots=True)
class EntityUpdate:
    """What one event says about one entity. ``state`` None: facts only (a stub row)."""

    table: Table
    id: str
    state: Versioned | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    status_facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    """The webhook being applied: its id makes the apply idempotent."""

    id: str
    name: str
    at: int
    """The event's ``created_at`` (unix seconds)."""
    entity_id: str | None = None
    attempt: int = 1
