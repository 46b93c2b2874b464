"""The ingress as a template: another provider is one small verifier object, not a new endpoint.

Stripe signs ``<t>.<body>`` (``Stripe-Signature: t=<unix>,v1=<hex hmac>[,v1=...]``) with a
time tolerance, and puts the event id, type and creation time in the body. Everything else
(size and time limits, strict parsing, dedup by id, priority routing, 503 on Redis loss,
refusal counting) is the same endpoint the Razorpay app uses.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
import pytest

from consumers.razorpay.ingress import create_app
from consumers.razorpay.settings import RazorpaySettings
from consumers.razorpay.verifier import (
    EVENT_ID,
    MalformedBody,
    Refused,
    VerifiedEvent,
    parse_event_body,
)
from streamflow import Queue, StreamflowSettings
from streamflow.codec import F_DATA

pytestmark = pytest.mark.anyio

STRIPE_SECRET = b"whsec_stripe_test_9c1e"
PATH = "/webhooks/stripe"


class StripeVerifier:
    """Stripe's webhook signature scheme, as its documentation describes it."""

    header = "stripe-signature"

    def __init__(self, secret: bytes, tolerance: float = 300.0) -> None:
        self._secret = secret
        self.tolerance = tolerance

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> VerifiedEvent:
        fields = [part.partition("=") for part in headers.get(self.header, "").split(",")]
        stamps = [value for key, _, value in fields if key.strip() == "t"]
        signatures = [value.strip() for key, _, value in fields if key.strip() == "v1"]
        if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
            raise Refused(400, "invalid signature", "signature")
        expected = hmac.new(self._secret, stamps[0].encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, given) for given in signatures):
            raise Refused(400, "invalid signature", "signature")
        if abs(now - int(stamps[0])) > self.tolerance:
            raise Refused(400, "timestamp outside the tolerance", "stale")
        try:
            event = parse_event_body(body)
        except MalformedBody as exc:
            raise Refused(400, str(exc), "malformed") from None
        event_id, kind, created = event.get("id"), event.get("type"), event.get("created")
        if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
            raise Refused(400, "bad event id", "event_id")
        if not isinstance(kind, str) or not kind or not isinstance(created, int):
            raise Refused(400, "not a Stripe event", "malformed")
        return VerifiedEvent(kind, event_id, created)


def stripe_delivery(event: dict[str, Any], at: float | None = None,
                    secret: bytes = STRIPE_SECRET) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(event)
    stamp = str(int(time.time() if at is None else at))
    signature = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"stripe-signature": f"t={stamp},v1={signature}",
                  "content-type": "application/json"}


def stripe_event(event_id: str = "evt_1NG8Du2eZvKYlo2CUI79vXWy",
                 kind: str = "payment_intent.succeeded") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
            "data": {"object": {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 2000}}}


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, settings=StreamflowSettings.from_url(redis_url)) as queue:
        yield queue


@pytest.fixture
async def client(queue: Queue) -> AsyncIterator[httpx.AsyncClient]:
    settings = RazorpaySettings(priority_routes={"payment_intent.*": "high"},
                                default_priority="low")
    app = create_app(settings, queue=queue, verifier=StripeVerifier(STRIPE_SECRET), path=PATH)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingress") as client:
        yield client


async def test_a_stripe_event_is_enqueued_once_by_its_body_id(client: httpx.AsyncClient,
                                                               queue: Queue) -> None:
    body, headers = stripe_delivery(stripe_event())
    first = await client.post(PATH, content=body, headers=headers)
    assert first.json() == {"status": "queued", "event_id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
                            "priority": "high"}
    again = await client.post(PATH, content=body, headers=headers)
    assert again.json()["status"] == "duplicate"
    [(_, fields)] = await queue.client.xrange(queue.keys.level("high"))
    assert orjson.loads(fields[F_DATA]) == body.decode()


@pytest.mark.parametrize("case", ["wrong-secret", "old", "no-header", "razorpay-header"])
async def test_what_stripe_would_not_have_sent_is_refused(client: httpx.AsyncClient,
                                                          queue: Queue, case: str) -> None:
    event = stripe_event()
    if case == "wrong-secret":
        body, headers = stripe_delivery(event, secret=b"whsec_other")
    elif case == "old":
        body, headers = stripe_delivery(event, at=time.time() - 3600)
    else:
        body, headers = stripe_delivery(event)
        signature = headers.pop("stripe-signature")
        if case == "razorpay-header":
            headers["x-razorpay-signature"] = signature
    response = await client.post(PATH, content=body, headers=headers)
    assert response.status_code == 400
    counts = await queue.counts()
    assert sum(level["length"] for level in counts["levels"].values()) == 0


async def test_the_razorpay_path_is_not_served_by_a_stripe_app(client: httpx.AsyncClient) -> None:
    assert (await client.post("/webhooks/razorpay", content=b"{}")).status_code == 404
