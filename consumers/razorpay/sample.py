"""Realistic, signed Razorpay webhook bodies for tests, the demo and the benchmark.

The envelopes follow Razorpay's shape (``entity: "event"``, ``event``, ``contains``,
``payload.<entity>.entity``, ``created_at`` in unix seconds, amounts in the smallest currency
unit). Ids are random but well-formed (``pay_``, ``order_``, ``rfnd_``... and 14 base62 chars).

Usage::

    hook = sign_event(payment_event("payment.captured", "pay_X"), secret="whsec")
    httpx.post(url, content=hook.body, headers=hook.headers())
    hooks = sample_webhooks(1000, secret="whsec", seed=7)   # a mix of whole lifecycles
"""

from __future__ import annotations

import random
import string
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .signature import sign

ALPHABET = string.ascii_letters + string.digits
ACCOUNT_ID = "acc_BFQ7uQEaa7j2z7"
EVENT_ID_HEADER = "x-razorpay-event-id"
SIGNATURE_HEADER = "x-razorpay-signature"

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SignedWebhook:
    """One webhook delivery as Razorpay would send it."""

    event_id: str
    event: str
    body: bytes
    signature: str

    def headers(self) -> dict[str, str]:
        """The request headers of this delivery."""
        return {
            "content-type": "application/json",
            SIGNATURE_HEADER: self.signature,
            EVENT_ID_HEADER: self.event_id,
        }


def new_id(prefix: str = "", rng: random.Random | None = None) -> str:
    """A Razorpay-style id: ``prefix_`` and 14 base62 characters (no prefix: event ids)."""
    chooser = rng or random
    tail = "".join(chooser.choice(ALPHABET) for _ in range(14))
    return f"{prefix}_{tail}" if prefix else tail


def now() -> int:
    return int(time.time())


def envelope(event: str, payload: dict[str, dict[str, Any]],
             created_at: int | None = None) -> Event:
    """A webhook body around ``payload`` (entity name -> entity dict)."""
    return {
        "entity": "event",
        "account_id": ACCOUNT_ID,
        "event": event,
        "contains": list(payload),
        "payload": {name: {"entity": entity} for name, entity in payload.items()},
        "created_at": now() if created_at is None else created_at,
    }


def payment_entity(payment_id: str, status: str, *, amount: int = 50_000,
                   currency: str = "INR", order_id: str | None = None, method: str = "upi",
                   amount_refunded: int = 0, created_at: int | None = None) -> dict[str, Any]:
    """A payment entity; a failed one carries Razorpay's error fields."""
    failed = status == "failed"
    return {
        "id": payment_id,
        "entity": "payment",
        "amount": amount,
        "currency": currency,
        "status": status,
        "order_id": order_id,
        "invoice_id": None,
        "international": False,
        "method": method,
        "amount_refunded": amount_refunded,
        "refund_status": None,
        "captured": status in ("captured", "refunded"),
        "description": "Order #1042",
        "card_id": None,
        "bank": None,
        "wallet": None,
        "vpa": "customer@okhdfcbank" if method == "upi" else None,
        "email": "customer@example.com",
        "contact": "+919876543210",
        "notes": {"cart": "1042"},
        "fee": 1180 if status == "captured" else None,
        "tax": 180 if status == "captured" else None,
        "error_code": "BAD_REQUEST_ERROR" if failed else None,
        "error_description": "Payment was cancelled by the customer" if failed else None,
        "error_source": "customer" if failed else None,
        "error_step": "payment_authentication" if failed else None,
        "error_reason": "payment_cancelled" if failed else None,
        "acquirer_data": {"rrn": "412345678901"},
        "created_at": now() if created_at is None else created_at,
    }


def order_entity(order_id: str, status: str, *, amount: int = 50_000, currency: str = "INR",
                 created_at: int | None = None) -> dict[str, Any]:
    """An order entity."""
    paid = amount if status == "paid" else 0
    return {
        "id": order_id, "entity": "order", "amount": amount, "amount_paid": paid,
        "amount_due": amount - paid, "currency": currency, "receipt": "rcpt_1042",
        "offer_id": None, "status": status, "attempts": 1, "notes": [],
        "created_at": now() if created_at is None else created_at,
    }


def refund_entity(refund_id: str, payment_id: str, status: str, *, amount: int = 10_000,
                  currency: str = "INR", created_at: int | None = None) -> dict[str, Any]:
    """A refund entity (``status``: pending, processed or failed)."""
    return {
        "id": refund_id, "entity": "refund", "amount": amount, "currency": currency,
        "payment_id": payment_id, "notes": {"reason": "customer request"},
        "receipt": None, "acquirer_data": {"arn": None}, "batch_id": None,
        "status": status, "speed_processed": "normal", "speed_requested": "normal",
        "created_at": now() if created_at is None else created_at,
    }


def payment_event(event: str, payment_id: str, *, amount: int = 50_000,
                  order_id: str | None = None, created_at: int | None = None,
                  entity_created_at: int | None = None) -> Event:
    """``payment.authorized`` / ``payment.captured`` / ``payment.failed``.

    ``created_at`` is the event's time, ``entity_created_at`` the payment's (default: the same).
    """
    status = event.rpartition(".")[2]
    at = now() if created_at is None else created_at
    entity = payment_entity(payment_id, status, amount=amount, order_id=order_id,
                            created_at=at if entity_created_at is None else entity_created_at)
    return envelope(event, {"payment": entity}, at)


def order_paid_event(order_id: str, payment_id: str, *, amount: int = 50_000,
                     created_at: int | None = None,
                     entity_created_at: int | None = None) -> Event:
    """``order.paid``: the order and its captured payment."""
    at = now() if created_at is None else created_at
    since = at if entity_created_at is None else entity_created_at
    return envelope("order.paid", {
        "payment": payment_entity(payment_id, "captured", amount=amount, order_id=order_id,
                                  created_at=since),
        "order": order_entity(order_id, "paid", amount=amount, created_at=since),
    }, at)


def refund_event(event: str, refund_id: str, payment_id: str, *, amount: int = 10_000,
                 payment_amount: int = 50_000, created_at: int | None = None,
                 entity_created_at: int | None = None,
                 payment_created_at: int | None = None) -> Event:
    """``refund.created`` / ``refund.processed`` / ``refund.failed`` with the payment."""
    status = {"refund.created": "pending", "refund.processed": "processed",
              "refund.failed": "failed"}[event]
    at = now() if created_at is None else created_at
    since = at if entity_created_at is None else entity_created_at
    return envelope(event, {
        "refund": refund_entity(refund_id, payment_id, status, amount=amount, created_at=since),
        "payment": payment_entity(payment_id, "captured", amount=payment_amount,
                                  created_at=since if payment_created_at is None
                                  else payment_created_at),
    }, at)


def subscription_event(event: str, subscription_id: str, *, status: str | None = None,
                       paid_count: int = 0, created_at: int | None = None) -> Event:
    """A ``subscription.*`` event; the entity's status follows the event unless given."""
    verb = event.rpartition(".")[2]
    entity_status = status or {"activated": "active", "charged": "active",
                               "resumed": "active", "updated": "active"}.get(verb, verb)
    at = now() if created_at is None else created_at
    entity = {
        "id": subscription_id, "entity": "subscription", "plan_id": "plan_00000000000001",
        "customer_id": "cust_D00000000000001", "status": entity_status,
        "current_start": at, "current_end": at + 30 * 86400, "ended_at": None,
        "quantity": 1, "notes": [], "charge_at": at + 30 * 86400, "start_at": at,
        "end_at": at + 365 * 86400, "auth_attempts": 0, "total_count": 12,
        "paid_count": paid_count, "customer_notify": True, "created_at": at,
        "expire_by": None, "short_url": None, "has_scheduled_changes": False,
        "change_scheduled_at": None, "source": "api", "remaining_count": 12 - paid_count,
    }
    return envelope(event, {"subscription": entity}, at)


def settlement_event(settlement_id: str, *, amount: int = 4_850_000,
                     created_at: int | None = None) -> Event:
    """``settlement.processed``."""
    at = now() if created_at is None else created_at
    return envelope("settlement.processed", {"settlement": {
        "id": settlement_id, "entity": "settlement", "amount": amount, "status": "processed",
        "fees": 118_000, "tax": 18_000, "utr": "SBIN0000000012345", "created_at": at,
    }}, at)


def dispute_event(event: str, dispute_id: str, payment_id: str, *, amount: int = 50_000,
                  created_at: int | None = None) -> Event:
    """A ``payment.dispute.*`` event with the disputed payment."""
    status = {"created": "open"}.get(event.rpartition(".")[2], event.rpartition(".")[2])
    at = now() if created_at is None else created_at
    return envelope(event, {
        "payment": payment_entity(payment_id, "captured", amount=amount, created_at=at),
        "dispute": {
            "id": dispute_id, "entity": "dispute", "payment_id": payment_id, "amount": amount,
            "currency": "INR", "amount_deducted": 0, "reason_code": "chargeback",
            "respond_by": at + 7 * 86400, "status": status, "phase": "chargeback",
            "created_at": at,
        },
    }, at)


def sample_event(event: str, rng: random.Random | None = None,
                 created_at: int | None = None) -> Event:
    """A body of any event type, with fresh ids (unknown types get a bare payment)."""
    family = event.split(".")[0]
    if event.startswith("payment.dispute."):
        return dispute_event(event, new_id("disp", rng), new_id("pay", rng),
                             created_at=created_at)
    if family == "payment":
        return payment_event(event, new_id("pay", rng), created_at=created_at)
    if event == "order.paid":
        return order_paid_event(new_id("order", rng), new_id("pay", rng), created_at=created_at)
    if family == "refund":
        return refund_event(event, new_id("rfnd", rng), new_id("pay", rng),
                            created_at=created_at)
    if family == "subscription":
        return subscription_event(event, new_id("sub", rng), created_at=created_at)
    if family == "settlement":
        return settlement_event(new_id("setl", rng), created_at=created_at)
    at = now() if created_at is None else created_at
    return envelope(event, {"payment": payment_entity(new_id("pay", rng), "created",
                                                      created_at=at)}, at)


def sign_event(event: Event, secret: str | bytes, event_id: str | None = None) -> SignedWebhook:
    """Serialize ``event`` and sign it as Razorpay does."""
    body = orjson.dumps(event)
    return SignedWebhook(event_id or new_id(), str(event["event"]), body, sign(body, secret))


def payment_lifecycle(rng: random.Random, start: int) -> list[Event]:
    """The events of one checkout: most capture, some fail, some are later refunded."""
    payment_id, order_id = new_id("pay", rng), new_id("order", rng)
    amount = rng.choice((19_900, 49_900, 99_900, 250_000))
    events = [payment_event("payment.authorized", payment_id, amount=amount, order_id=order_id,
                            created_at=start)]
    if rng.random() < 0.1:
        return [*events, payment_event("payment.failed", payment_id, amount=amount,
                                       order_id=order_id, created_at=start + 1,
                                       entity_created_at=start)]
    events.append(payment_event("payment.captured", payment_id, amount=amount,
                                order_id=order_id, created_at=start + 1,
                                entity_created_at=start))
    events.append(order_paid_event(order_id, payment_id, amount=amount, created_at=start + 1,
                                   entity_created_at=start))
    if rng.random() < 0.15:
        refund_id = new_id("rfnd", rng)
        for event, at in (("refund.created", start + 60), ("refund.processed", start + 120)):
            events.append(refund_event(event, refund_id, payment_id, amount=amount // 2,
                                       payment_amount=amount, created_at=at,
                                       entity_created_at=start + 60,
                                       payment_created_at=start))
    return events


def sample_webhooks(count: int, secret: str | bytes, seed: int = 0, *,
                    start: int | None = None, per_second: int = 1) -> list[SignedWebhook]:
    """``count`` signed deliveries: checkout lifecycles with subscriptions, settlements and
    disputes mixed in, each with its own event id.

    Lifecycles begin at ``start`` (default: an hour ago), ``per_second`` of them in each
    second: tens of thousands of deliveries need more than one a second, or the last ones would
    be created in the future (which the ingress refuses past its clock skew).
    """
    if per_second < 1:
        raise ValueError("per_second must be >= 1")
    rng = random.Random(seed)
    first = now() - 3600 if start is None else start
    started = 0
    hooks: list[SignedWebhook] = []
    while len(hooks) < count:
        start = first + started // per_second
        roll = rng.random()
        if roll < 0.05:
            events = [subscription_event("subscription.charged", new_id("sub", rng),
                                         paid_count=rng.randint(1, 11), created_at=start)]
        elif roll < 0.07:
            events = [settlement_event(new_id("setl", rng), created_at=start)]
        elif roll < 0.08:
            events = [dispute_event("payment.dispute.created", new_id("disp", rng),
                                    new_id("pay", rng), created_at=start)]
        else:
            events = payment_lifecycle(rng, start)
        hooks += [sign_event(event, secret, new_id(rng=rng)) for event in events]
        started += 1
    return hooks[:count]
