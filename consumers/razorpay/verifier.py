"""Webhook verifiers: what a provider signs, and where an event's type, id and time are.

The ingress endpoint is provider-neutral: it reads the body (bounded in size and time), hands
the raw bytes and the headers to a verifier, and enqueues the verified bytes unchanged. A
verifier either returns a `VerifiedEvent` or raises `Refused`; adapting the app to another
provider means writing one verifier (the tests hold one for Stripe's ``t=``/``v1=`` scheme)::

    app = create_app(settings, verifier=MyProviderVerifier(secret), path="/webhooks/myprovider")

Bodies are parsed strictly (`parse_event_body`): UTF-8 only, no duplicate keys, no NaN,
integers kept exact, nesting bounded. The workers parse the same bytes with the same function,
so the ingress and the ledger can never read two different events out of one body.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from .signature import verify as verify_signature

EVENT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
"""What an event id may look like before it becomes part of a Redis key."""
MAX_DEPTH = 64
"""Deepest nesting of objects and arrays a webhook body may have."""


class Refused(Exception):
    """Raised by a verifier when a request must not be enqueued.

    ``status`` and ``message`` are the HTTP answer (public: never a secret or a parser
    internal); ``reason`` is a short stable word for counting and logs.
    """

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


class MalformedBody(ValueError):
    """Raised by `parse_event_body` for a body that is not one strict JSON object."""


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """What the ingress needs of a verified webhook: the job's name and id, and its time."""

    type: str
    id: str
    created_at: int | None
    """Signed creation time (unix seconds), None when the provider signs none."""
    index: dict[str, str] = field(default_factory=dict)
    """Business keys to index the job under (``Queue.find("payment_id", ...)``)."""
    key: str | None = None
    """Ordering key (``Queue.add(..., key=...)``): on an ordered queue the events of one key
    run one at a time, in the order they arrived; on a partitioned one they share a
    partition."""


class WebhookVerifier(Protocol):
    """Checks one webhook delivery and reads its event type, id and time."""

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> VerifiedEvent:
        """The verified event of ``body``; raises `Refused` when it must not be enqueued."""
        ...


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise MalformedBody(f"duplicate key {duplicate[:40]!r}")
    return result


def _no_constant(name: str) -> Any:
    raise MalformedBody(f"{name} is not JSON")


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):  # a tuple: no union object built per call
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _may_nest_too_deep(raw: bytes) -> bool:
    """False when ``raw`` holds too few brackets to nest deeper than `MAX_DEPTH` (brackets
    inside strings only add to the count): the usual body needs no walk of its tree."""
    return raw.count(b"{") + raw.count(b"[") > MAX_DEPTH


_SHAPE = bytes(ord("0") if 48 <= i <= 57 else ord("[") if i == ord("{") else i for i in range(256))
"""Translation table: every digit becomes ``0``, ``{`` becomes ``[``, the rest stays."""
_LONG_NUMBER = b"0" * 19
"""An integer of 19 digits or more may not fit in 64 bits, which orjson reads as a float."""


def _parse_fast(raw: bytes) -> dict[str, Any] | None:
    """``raw`` parsed by orjson when that is provably what the strict parser would return,
    else None (the strict parser then decides, with its error messages).

    orjson refuses what the strict parser refuses (invalid UTF-8, NaN/Infinity, trailing data,
    control characters), except three things checked here: integers past 64 bits (read as
    floats: no long digit run may appear), lone surrogate escapes (no ``\\u`` may appear) and
    duplicate keys (orjson keeps the last). Without ``\\u`` escapes, each ``:`` of a string in
    ``raw`` is a ``:`` of the parsed string; the other ``:`` separate keys from values. So ``raw``
    has as many ``:`` as the parsed value serialized again exactly when no key was dropped:
    a dropped duplicate takes at least its own ``:`` with it.
    """
    shape = raw.translate(_SHAPE)  # one pass in C instead of a regex and two counts
    if shape.count(b"[") > MAX_DEPTH or b"\\u" in shape or _LONG_NUMBER in shape:
        return None  # (deep bodies too: orjson.dumps refuses past 254 levels)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or orjson.dumps(value).count(b":") != shape.count(b":"):
        return None
    return value


def parse_event_body(body: bytes | str) -> dict[str, Any]:
    """``body`` as a JSON object, strictly: UTF-8, no duplicate keys, no NaN/Infinity, at most
    `MAX_DEPTH` levels, integers exact (a 30-digit amount stays that integer).

    Raises `MalformedBody` with a one-line reason.
    """
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    value = _parse_fast(raw)
    if value is not None:
        return value
    value = _parse_strict(body)
    if _may_nest_too_deep(raw) and _too_deep(value):
        raise MalformedBody(f"body nests deeper than {MAX_DEPTH} levels")
    return value


def _parse_strict(body: bytes | str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        raise MalformedBody("body is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise MalformedBody("body is not JSON") from None
    except RecursionError:
        raise MalformedBody(f"body nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise MalformedBody("body is not a JSON object")
    return value


def check_time(created_at: int, now: float, max_age: float, max_skew: float) -> None:
    """Refuse an event created more than ``max_age`` seconds ago (its dedup mark may be gone:
    a replay would be enqueued again) or more than ``max_skew`` seconds in the future."""
    if now - created_at > max_age:
        raise Refused(400, f"event older than {max_age:g} s", "stale")
    if created_at - now > max_skew:
        raise Refused(400, "event created in the future", "future")


class RazorpayVerifier:
    """Razorpay: ``X-Razorpay-Signature`` is the hex HMAC-SHA256 of the body; the event type
    is ``event`` and the signed time ``created_at`` in the body; the event id comes in the
    unsigned ``X-Razorpay-Event-Id`` header (checked against `EVENT_ID`; without it, a hash
    of the body is the id).
    """

    signature_header = "x-razorpay-signature"
    id_header = "x-razorpay-event-id"

    def __init__(self, secret: bytes, *, max_age: float, max_skew: float = 300.0) -> None:
        if not secret:
            raise ValueError("the webhook secret is empty")
        self._secret = secret
        self.max_age = max_age
        self.max_skew = max_skew

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> VerifiedEvent:
        """The verified event of one delivery, or `Refused`."""
        if not verify_signature(body, headers.get(self.signature_header), self._secret):
            raise Refused(400, "invalid signature", "signature")
        try:
            event = parse_event_body(body)
        except MalformedBody as exc:
            raise Refused(400, str(exc), "malformed") from None
        name = event.get("event")
        if not isinstance(name, str) or not name:
            raise Refused(400, "body is not a Razorpay event (no 'event' type)", "malformed")
        created_at = event.get("created_at")
        if not isinstance(created_at, int) or isinstance(created_at, bool):
            raise Refused(400, "body has no 'created_at' (unix seconds)", "malformed")
        check_time(created_at, now, self.max_age, self.max_skew)
        event_id = headers.get(self.id_header)
        if event_id is None or event_id == "":
            event_id = "body-" + hashlib.sha256(body).hexdigest()[:32]
        elif not EVENT_ID.fullmatch(event_id):
            raise Refused(400, "bad event id (expected 1-64 letters, digits or _)", "event_id")
        ids = business_ids(event)
        return VerifiedEvent(name, event_id, created_at, ids, ids.get("payment_id"))


INDEXED = {"payment": "payment_id", "order": "order_id", "refund": "refund_id",
           "subscription": "subscription_id"}


def business_ids(event: dict[str, Any]) -> dict[str, str]:
    """The payment, order, refund and subscription ids an event carries, for
    ``Queue.find("payment_id", "pay_...")``: each entity's own id, and the payment/order an
    entity points to (a refund's ``payment_id``, a payment's ``order_id``)."""
    found: dict[str, str] = {}
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return found
    for kind, wrapper in payload.items():
        entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
        if not isinstance(entity, dict):
            continue
        if kind in INDEXED and _usable(entity.get("id")):
            found[INDEXED[kind]] = entity["id"]
        for name in ("payment_id", "order_id", "subscription_id"):
            if name not in found and _usable(entity.get(name)):
                found[name] = entity[name]
    return found


def _usable(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200
