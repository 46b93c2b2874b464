"""The webhook ingress over real Redis: through httpx.ASGITransport, and over real HTTP."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import orjson
import pytest

from consumers.razorpay.ingress import PriorityTable, create_app
from consumers.razorpay.sample import (
    SignedWebhook,
    payment_event,
    refund_event,
    sample_event,
    sign_event,
)
from consumers.razorpay.settings import MIB, RazorpaySettings
from consumers.razorpay.signature import sign
from streamflow import Queue, StreamflowSettings
from tests.integration.razorpay_support import SECRET, ServerThread
from tests.servers import HOST, free_port

pytestmark = pytest.mark.anyio

WEBHOOK = "/webhooks/razorpay"
ROUTES = [
    ("payment.captured", "high"),
    ("payment.failed", "high"),
    ("refund.created", "high"),
    ("refund.processed", "high"),
    ("refund.failed", "high"),
    ("order.paid", "normal"),
    ("subscription.charged", "normal"),
    ("subscription.cancelled", "normal"),
    ("payment.authorized", "low"),
    ("settlement.processed", "low"),
    ("payment.dispute.created", "low"),
    ("invoice.paid", "low"),
]


def razorpay_settings(**overrides: Any) -> RazorpaySettings:
    return RazorpaySettings(webhook_secret=SECRET, **overrides)


@pytest.fixture
def sf(redis_url: str) -> StreamflowSettings:
    return StreamflowSettings.from_url(redis_url)


@pytest.fixture
async def queue(sf: StreamflowSettings, queue_name: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, settings=sf) as queue:
        yield queue


@pytest.fixture
async def client(queue: Queue) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(razorpay_settings(), queue=queue)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingress") as client:
        yield client


async def lengths(queue: Queue) -> dict[str, int]:
    counts = await queue.counts()
    return {level: c["length"] for level, c in counts["levels"].items()}


def hook(event: str = "payment.captured", event_id: str | None = None) -> SignedWebhook:
    return sign_event(sample_event(event), SECRET, event_id)


async def post(client: httpx.AsyncClient, webhook: SignedWebhook, **headers: str) -> httpx.Response:
    return await client.post(WEBHOOK, content=webhook.body,
                             headers={**webhook.headers(), **headers})


# ---------------------------------------------------------------------------- signatures


async def test_a_signed_webhook_is_enqueued_and_answered_200(
        client: httpx.AsyncClient, queue: Queue) -> None:
    webhook = hook("payment.captured", "evt_Signed0000001")
    response = await post(client, webhook)
    assert response.status_code == 200
    assert response.json() == {"status": "queued", "event_id": "evt_Signed0000001",
                               "priority": "high"}
    assert await lengths(queue) == {"high": 1, "normal": 0, "low": 0}
    [(_, fields)] = await queue.client.xrange(queue.keys.level("high"))
    assert webhook.event_id.encode() in fields.values()
    assert b"payment.captured" in fields.values()


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "wrong", sign(b"other", SECRET)],
                         ids=["missing", "empty", "zeros", "garbage", "other-body"])
async def test_a_missing_or_wrong_signature_is_refused_and_nothing_enqueued(
        client: httpx.AsyncClient, queue: Queue, signature: str | None) -> None:
    webhook = hook()
    headers = webhook.headers()
    if signature is None:
        del headers["x-razorpay-signature"]
    else:
        headers["x-razorpay-signature"] = signature
    response = await client.post(WEBHOOK, content=webhook.body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid signature"}
    assert sum((await lengths(queue)).values()) == 0


async def test_a_webhook_signed_with_another_secret_is_refused(
        client: httpx.AsyncClient, queue: Queue) -> None:
    webhook = sign_event(sample_event("payment.captured"), "whsec_someone_else")
    assert (await post(client, webhook)).status_code == 400
    assert sum((await lengths(queue)).values()) == 0


async def test_secrets_and_signatures_are_never_logged(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    webhook = hook()
    await post(client, webhook)
    await post(client, webhook, **{"x-razorpay-signature": "f" * 64})
    assert SECRET not in caplog.text
    assert webhook.signature not in caplog.text
    assert "refused" in caplog.text
    assert SECRET not in repr(razorpay_settings())


# ------------------------------------------------------------------------ bodies


async def test_a_body_over_1_mib_is_refused_with_413(
        client: httpx.AsyncClient, queue: Queue) -> None:
    event = payment_event("payment.captured", "pay_Big")
    event["padding"] = "x" * MIB
    webhook = sign_event(event, SECRET)
    assert (await post(client, webhook)).status_code == 413
    assert sum((await lengths(queue)).values()) == 0


async def test_a_streamed_body_is_cut_off_while_reading(
        client: httpx.AsyncClient, queue: Queue) -> None:
    chunk, total = b"x" * 65536, 64
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(total):
            sent += 1
            yield chunk

    response = await client.post(WEBHOOK, content=body(),
                                 headers={"x-razorpay-signature": "0" * 64})
    assert response.status_code == 413
    assert sent < total, "the ingress read the whole 4 MiB body before refusing it"
    assert sum((await lengths(queue)).values()) == 0


async def test_a_body_just_under_the_limit_is_accepted(
        client: httpx.AsyncClient, queue: Queue) -> None:
    event = payment_event("payment.captured", "pay_Edge")
    event["padding"] = ""
    size = len(orjson.dumps(event))
    event["padding"] = "x" * (400_000 - size)
    response = await post(client, sign_event(event, SECRET))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body", [b"not json", b"{\"event\": ", b"", b"[1, 2]",
                                  b'{"entity": "event"}', b'{"event": 42}'],
                         ids=["text", "truncated", "empty", "array", "no-event", "bad-event"])
async def test_a_body_that_is_not_a_json_event_is_refused_with_400(
        client: httpx.AsyncClient, queue: Queue, body: bytes) -> None:
    response = await client.post(WEBHOOK, content=body, headers={
        "x-razorpay-signature": sign(body, SECRET), "x-razorpay-event-id": "evt_NotJson"})
    assert response.status_code == 400
    assert sum((await lengths(queue)).values()) == 0


async def test_a_bad_content_length_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(WEBHOOK, content=b"{}", headers={"content-length": "x"})
    assert response.status_code == 400


async def test_other_methods_are_not_allowed(client: httpx.AsyncClient) -> None:
    assert (await client.get(WEBHOOK)).status_code == 405


# ------------------------------------------------------------------------- dedup


async def test_a_redelivered_event_is_enqueued_once(
        client: httpx.AsyncClient, queue: Queue) -> None:
    webhook = hook("payment.captured", "evt_Redelivered01")
    statuses: list[str] = []

    async def deliver() -> None:
        response = await post(client, webhook)
        assert response.status_code == 200
        statuses.append(response.json()["status"])

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(deliver)
    assert sorted(statuses) == ["duplicate"] * 4 + ["queued"]
    assert await lengths(queue) == {"high": 1, "normal": 0, "low": 0}


async def test_without_an_event_id_the_body_is_the_dedup_key(
        client: httpx.AsyncClient, queue: Queue) -> None:
    webhook = hook("order.paid")
    headers = webhook.headers()
    del headers["x-razorpay-event-id"]
    first = await client.post(WEBHOOK, content=webhook.body, headers=headers)
    second = await client.post(WEBHOOK, content=webhook.body, headers=headers)
    assert (first.json()["status"], second.json()["status"]) == ("queued", "duplicate")
    assert first.json()["event_id"].startswith("body-")
    assert await lengths(queue) == {"high": 0, "normal": 1, "low": 0}


# ----------------------------------------------------------------------- routing


async def test_event_types_are_routed_by_the_documented_table(
        client: httpx.AsyncClient, queue: Queue) -> None:
    expected = {"high": 0, "normal": 0, "low": 0}
    for event, level in ROUTES:
        response = await post(client, hook(event))
        assert response.status_code == 200
        assert response.json()["priority"] == level, event
        expected[level] += 1
    assert await lengths(queue) == expected


async def test_the_routing_table_is_configurable(queue: Queue) -> None:
    settings = razorpay_settings(priority_routes={"payment.*": "normal", "refund.failed": "high"},
                                 default_priority="low")
    app = create_app(settings, queue=queue)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingress") as client:
        levels = {event: (await post(client, hook(event))).json()["priority"]
                  for event in ("payment.captured", "payment.dispute.won", "refund.failed",
                                "refund.created", "order.paid")}
    assert levels == {"payment.captured": "normal", "payment.dispute.won": "normal",
                      "refund.failed": "high", "refund.created": "low", "order.paid": "low"}


def test_the_longest_matching_route_wins() -> None:
    table = PriorityTable({"payment.*": "low", "payment.dispute.*": "high",
                           "payment.dispute.closed": "normal"}, "normal")
    assert table.level("payment.dispute.won") == "high"
    assert table.level("payment.dispute.closed") == "normal"
    assert table.level("payment.captured") == "low"
    assert table.level("order.paid") == "normal"


def test_a_route_to_an_unknown_level_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown levels"):
        create_app(razorpay_settings(priority_routes={"payment.*": "urgent"}),
                   StreamflowSettings.from_url("redis://127.0.0.1:1/0"))


def test_the_app_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ValueError, match="RAZORPAY_WEBHOOK_SECRET"):
        create_app(RazorpaySettings(webhook_secret=""),
                   StreamflowSettings.from_url("redis://127.0.0.1:1/0"))


# ------------------------------------------------------------------ health, readiness


async def test_health_and_readiness_with_redis_up(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


@pytest.fixture
def redis_down() -> StreamflowSettings:
    """Settings pointing at a port nothing listens on."""
    return StreamflowSettings.from_url(f"redis://{HOST}:{free_port()}/0")


async def test_readiness_fails_and_webhooks_get_503_while_redis_is_down(
        redis_down: StreamflowSettings, queue_name: str) -> None:
    settings = razorpay_settings(queue=queue_name, ready_timeout=0.3, enqueue_timeout=0.3)
    queue = Queue(queue_name, settings=redis_down)  # not entered: entering needs Redis
    try:
        app = create_app(settings, queue=queue)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://ingress") as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            assert (await post(client, hook())).status_code == 503
    finally:
        await queue.close()


async def test_webhooks_get_503_when_redis_accepts_but_never_answers(queue_name: str) -> None:
    """The enqueue deadline (not the body's) answers a Redis that hangs."""
    with socket.socket() as hole:  # connections complete in the backlog; nothing ever replies
        hole.bind((HOST, 0))
        hole.listen(16)
        hung = StreamflowSettings.from_url(f"redis://{HOST}:{hole.getsockname()[1]}/0")
        settings = razorpay_settings(queue=queue_name, enqueue_timeout=0.3, body_timeout=30)
        queue = Queue(queue_name, settings=hung)
        try:
            app = create_app(settings, queue=queue)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://ingress") as client:
                started = time.monotonic()
                response = await post(client, hook())
                assert response.status_code == 503
                assert response.json() == {"error": "queue unavailable, retry later"}
                assert time.monotonic() - started < 10
        finally:
            await queue.close()


# ------------------------------------------------------------------------- real HTTP


@pytest.fixture
def server(sf: StreamflowSettings, queue_name: str) -> Iterator[ServerThread]:
    app = create_app(razorpay_settings(queue=queue_name), sf)
    with ServerThread(app) as server:
        yield server


async def test_real_http_accepts_signed_and_refuses_unsigned(
        server: ServerThread, queue: Queue) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        webhook = hook("refund.processed")
        assert (await post(client, webhook)).json()["status"] == "queued"
        assert (await post(client, webhook)).json()["status"] == "duplicate"
        assert (await post(client, hook(), **{"x-razorpay-signature": "0" * 64})
                ).status_code == 400
        assert (await client.get("/readyz")).status_code == 200
    assert await lengths(queue) == {"high": 1, "normal": 0, "low": 0}


def _raw_request(port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


async def test_real_http_refuses_a_declared_oversize_body_before_it_arrives(
        server: ServerThread, queue: Queue) -> None:
    head = (f"POST {WEBHOOK} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * MIB}\r\nX-Razorpay-Signature: {'0' * 64}\r\n\r\n").encode()
    answer = await anyio.to_thread.run_sync(_raw_request, server.port, head, [b"{"])
    assert answer.startswith(b"HTTP/1.1 413")
    assert sum((await lengths(queue)).values()) == 0


async def test_real_http_cuts_off_an_endless_chunked_body(
        server: ServerThread, queue: Queue) -> None:
    head = (f"POST {WEBHOOK} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n"
            f"X-Razorpay-Signature: {'0' * 64}\r\n\r\n").encode()
    chunk = b"x" * 65536
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 20  # 1.25 MiB, never terminated
    answer = await anyio.to_thread.run_sync(_raw_request, server.port, head, parts)
    assert answer.startswith(b"HTTP/1.1 413")
    assert sum((await lengths(queue)).values()) == 0


async def test_payment_order_and_refund_ids_are_indexed_for_find(
        client: httpx.AsyncClient, queue: Queue) -> None:
    captured = sign_event(payment_event("payment.captured", "pay_Q1x9000000000",
                                        order_id="order_A100000000000"), SECRET)
    refunded = sign_event(refund_event("refund.processed", "rfnd_R100000000000",
                                       "pay_Q1x9000000000"), SECRET)
    for webhook in (captured, refunded):
        assert (await post(client, webhook)).status_code == 200
    found = await queue.find("payment_id", "pay_Q1x9000000000")
    assert [v.id for v in found] == [refunded.event_id, captured.event_id]
    assert found[1].index == {"payment_id": "pay_Q1x9000000000",
                              "order_id": "order_A100000000000"}
    assert [v.name for v in await queue.find("refund_id", "rfnd_R100000000000")] == [
        "refund.processed"]


async def test_on_an_ordered_queue_one_payments_webhooks_are_held_in_order(
        sf: StreamflowSettings, queue_name: str) -> None:
    """A payment's events arriving over HTTP are keyed by its id: on an ordered, partitioned
    queue the later ones wait behind the first, other payments are not held."""
    sf.queue.partitions = 2
    async with Queue(queue_name, settings=sf, ordered=("pay_",)) as ordered_queue:
        app = create_app(razorpay_settings(), queue=ordered_queue)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://ingress") as client:
            steps = ("payment.authorized", "payment.captured")
            for payment in ("pay_K100000000000", "pay_K200000000000"):
                for step in steps:
                    webhook = sign_event(payment_event(step, payment), SECRET)
                    assert (await post(client, webhook)).status_code == 200
        counts = await ordered_queue.counts()
        # before: no key was passed, so nothing was held (4 waiting, 0 held)
        assert (counts["waiting"], counts["held"]) == (2, 2)
