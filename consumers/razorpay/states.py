"""The ledger's state machines, made order-tolerant by construction.

Razorpay delivers webhooks at least once and in no guaranteed order. Each entity's state is
therefore kept as the *maximum* of what its events say, under a total order of
``(tier, at, rank)`` keys: ``tier`` ranks statuses that must never be undone (a captured payment
never goes back to authorized), ``at`` is the event's ``created_at`` (seconds) so that, inside a
tier, the later event wins, and ``rank`` breaks the remaining ties. A maximum is commutative,
associative and idempotent, so any ordering or repetition of an entity's events ends in the same
state. The store applies the same key in SQL (``status_tier, status_at, status_rank``).

Monotone machines (payments, refunds, orders, settlements) give each status its own tier;
machines that cycle (subscriptions, disputes) put their live statuses in tier 0, where the
latest event wins, and their final statuses in tier 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import reduce

StateKey = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Versioned:
    """A status as of one event's ``created_at`` (unix seconds)."""

    status: str
    at: int


@dataclass(frozen=True, slots=True)
class StateMachine:
    """Statuses of one kind of entity and their precedence."""

    name: str
    order: Mapping[str, tuple[int, int]]
    """status -> (tier, rank)."""
    initial: str

    def __post_init__(self) -> None:
        if len(set(self.order.values())) != len(self.order):
            raise ValueError(f"{self.name}: two statuses share a (tier, rank)")
        if self.initial not in self.order:
            raise ValueError(f"{self.name}: initial status {self.initial!r} is not a status")

    def __contains__(self, status: object) -> bool:
        return status in self.order

    def key(self, state: Versioned) -> StateKey:
        """The precedence key of ``state``; ``ValueError`` for a status this machine lacks."""
        try:
            tier, rank = self.order[state.status]
        except KeyError:
            raise ValueError(f"{state.status!r} is not a {self.name} status") from None
        return tier, state.at, rank

    def merge(self, current: Versioned | None, incoming: Versioned) -> Versioned:
        """The state after ``incoming`` is applied to ``current`` (None: entity unseen)."""
        if current is None or self.key(incoming) > self.key(current):
            return incoming
        return current

    def fold(self, states: Iterable[Versioned]) -> Versioned | None:
        """The state after all of ``states``, in whatever order they come."""
        return reduce(self.merge, states, None)


PAYMENT = StateMachine(
    "payment",
    {"created": (0, 0), "authorized": (1, 0), "failed": (2, 0), "captured": (3, 0)},
    initial="created",
)
REFUND = StateMachine(
    "refund", {"pending": (0, 0), "failed": (1, 0), "processed": (2, 0)}, initial="pending")
ORDER = StateMachine(
    "order", {"created": (0, 0), "attempted": (1, 0), "paid": (2, 0)}, initial="created")
SETTLEMENT = StateMachine(
    "settlement", {"created": (0, 0), "failed": (1, 0), "processed": (2, 0)}, initial="created")
SUBSCRIPTION = StateMachine(
    "subscription",
    {
        "created": (0, 0), "authenticated": (0, 1), "active": (0, 2), "pending": (0, 3),
        "halted": (0, 4), "paused": (0, 5),
        "cancelled": (1, 0), "completed": (1, 1), "expired": (1, 2),
    },
    initial="created",
)
DISPUTE = StateMachine(
    "dispute",
    {
        "open": (0, 0), "under_review": (0, 1), "action_required": (0, 2),
        "won": (1, 0), "lost": (1, 1), "closed": (1, 2),
    },
    initial="open",
)

EVENT_STATUS: dict[str, tuple[StateMachine, str]] = {
    "payment.authorized": (PAYMENT, "authorized"),
    "payment.captured": (PAYMENT, "captured"),
    "payment.failed": (PAYMENT, "failed"),
    "order.paid": (ORDER, "paid"),
    "refund.created": (REFUND, "pending"),
    "refund.processed": (REFUND, "processed"),
    "refund.failed": (REFUND, "failed"),
    "subscription.authenticated": (SUBSCRIPTION, "authenticated"),
    "subscription.activated": (SUBSCRIPTION, "active"),
    "subscription.charged": (SUBSCRIPTION, "active"),
    "subscription.pending": (SUBSCRIPTION, "pending"),
    "subscription.halted": (SUBSCRIPTION, "halted"),
    "subscription.paused": (SUBSCRIPTION, "paused"),
    "subscription.resumed": (SUBSCRIPTION, "active"),
    "subscription.cancelled": (SUBSCRIPTION, "cancelled"),
    "subscription.completed": (SUBSCRIPTION, "completed"),
    "settlement.processed": (SETTLEMENT, "processed"),
    "payment.dispute.created": (DISPUTE, "open"),
    "payment.dispute.under_review": (DISPUTE, "under_review"),
    "payment.dispute.action_required": (DISPUTE, "action_required"),
    "payment.dispute.won": (DISPUTE, "won"),
    "payment.dispute.lost": (DISPUTE, "lost"),
    "payment.dispute.closed": (DISPUTE, "closed"),
}
"""What each handled event says about its main entity."""

PAYMENT_STATUS_OF_ENTITY: dict[str, str] = {
    "created": "created", "authorized": "authorized", "failed": "failed",
    "captured": "captured", "refunded": "captured",
}
"""A payment entity's own ``status`` (as embedded in any event) -> ledger status."""


def refund_status(amount: int | None, amount_refunded: int) -> str | None:
    """``None``, ``"partial"`` or ``"full"``, as Razorpay reports a payment's refunds."""
    if amount_refunded <= 0:
        return None
    if amount is not None and amount_refunded >= amount:
        return "full"
    return "partial"


# ---------------------------------------------------------------- an order-dependent machine


class OutOfOrder(ValueError):
    """Raised when an event asks for a transition its entity's current status does not allow."""


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A strict state machine: each event moves an entity from its current status to one the
    current status allows, or is refused (`OutOfOrder`). Unlike `StateMachine` it is not
    order-tolerant: its events must be applied in the order they happened, which an ordered
    queue keyed by the entity gives (docs/scaling.md, per-key order)."""

    name: str
    initial: str
    moves: Mapping[str, frozenset[str]]
    """status -> the statuses it may move to."""

    def __post_init__(self) -> None:
        targets = {target for allowed in self.moves.values() for target in allowed}
        if self.initial not in self.moves or not targets <= set(self.moves):
            raise ValueError(f"{self.name}: every status must be listed in moves")

    def step(self, current: str, to: str) -> str:
        """``to`` when ``current`` may move to it; `OutOfOrder` otherwise."""
        if to not in self.moves.get(current, frozenset()):
            raise OutOfOrder(f"{self.name} cannot go from {current!r} to {to!r}")
        return to

    def run(self, statuses: Iterable[str]) -> str:
        """The status after ``statuses`` applied in turn from the initial one."""
        return reduce(self.step, statuses, self.initial)


PAYMENT_LIFECYCLE = Lifecycle(
    "payment",
    initial="created",
    moves={
        "created": frozenset({"authorized", "failed"}),
        "authorized": frozenset({"captured", "failed"}),
        "captured": frozenset({"refunded"}),
        "refunded": frozenset({"refunded"}),  # a second partial refund
        "failed": frozenset(),
    },
)
"""created -> authorized -> captured -> refunded (or failed before capture)."""

LIFECYCLE_EVENTS: dict[str, str] = {
    "payment.authorized": "authorized",
    "payment.captured": "captured",
    "payment.failed": "failed",
    "refund.processed": "refunded",
}
"""The events that move a payment along `PAYMENT_LIFECYCLE`, and where to."""
