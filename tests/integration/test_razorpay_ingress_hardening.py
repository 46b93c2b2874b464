"""What the internet-facing ingress refuses, against real Redis and a real uvicorn: slow clients,
too many connections, stale or badly identified events, bodies that would not survive a
parse/re-serialise round trip, and a non-ASCII Content-Length; refusals are counted and their
logs rate-limited."""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from consumers.razorpay.handlers import build_router
from consumers.razorpay.ingress import RefusalLog, create_app
from consumers.razorpay.sample import now, sample_event, sign_event
from consumers.razorpay.settings import RazorpaySettings
from consumers.razorpay.signature import sign
from consumers.razorpay.store import PAYMENTS
from consumers.razorpay.verifier import MAX_DEPTH, Refused
from streamflow import Queue, StreamflowSettings, Worker
from streamflow.codec import F_DATA
from tests.integration.razorpay_support import (
    SECRET,
    ServerThread,
    ledger_settings,
    throwaway_ledger,
    wait_for,
)
from tests.servers import HOST

pytestmark = pytest.mark.anyio

WEBHOOK = "/webhooks/razorpay"
BIG = 123456789012345678901234567890


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
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
async def client(queue: Queue, reader: InMemoryMetricReader) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(razorpay_settings(refused_log_interval=60), queue=queue,
                     meter_provider=MeterProvider(metric_readers=[reader]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingress") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def refused_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    counts: dict[str, int] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "webhook.refused":
                    for point in metric.data.data_points:
                        counts[str(point.attributes["reason"])] = int(point.value)  # type: ignore[index, attr-defined]
    return counts


async def total(queue: Queue) -> int:
    counts = await queue.counts()
    return sum(c["length"] for c in counts["levels"].values())


async def post_raw(client: httpx.AsyncClient, body: bytes, event_id: str = "evt_Raw01",
                   **headers: str) -> httpx.Response:
    return await client.post(WEBHOOK, content=body, headers={
        "x-razorpay-signature": sign(body, SECRET), "x-razorpay-event-id": event_id,
        **headers})


def event_text(created_at: int | None = None, amount: str = "50000", extra: str = "") -> str:
    """A Razorpay body written by hand, so that it can hold what a serializer would change."""
    at = now() if created_at is None else created_at
    return ('{"entity":"event","account_id":"acc_X","event":"payment.captured",'
            '"contains":["payment"],"payload":{"payment":{"entity":{"id":"pay_Hand0000000001",'
            f'"amount":{amount},"currency":"INR","status":"captured","created_at":{at}}}}}}},'
            f'"created_at":{at}{extra}}}')


# ------------------------------------------------------------------ the verified bytes


async def test_the_job_carries_the_signed_text_exactly(client: httpx.AsyncClient,
                                                       queue: Queue) -> None:
    text = event_text(extra=f', "notes": {{"big": {BIG}, "pi": 3.14159265358979323846}}')
    response = await post_raw(client, text.encode(), "evt_Exact001")
    assert response.status_code == 200, response.text
    [(_, fields)] = await queue.client.xrange(queue.keys.level("high"))
    assert orjson.loads(fields[F_DATA]) == text  # not a float, not re-serialised
    assert str(BIG) in text


@pytest.mark.parametrize(("body", "error"), [
    (event_text(extra=', "event": "refund.created"').encode(), "duplicate key 'event'"),
    (event_text(extra=', "n": ' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)).encode(),
     f"body nests deeper than {MAX_DEPTH} levels"),
    (event_text(extra=', "n": ' + '{"a":' * 5000 + "1" + "}" * 5000).encode(),
     f"body nests deeper than {MAX_DEPTH} levels"),
    (event_text(extra=', "name": "caf\xe9"').encode("latin-1"), "body is not UTF-8"),
    (event_text(extra=', "n": NaN').encode(), "NaN is not JSON"),
], ids=["duplicate-key", "deep-arrays", "very-deep-objects", "invalid-utf8", "nan"])
async def test_bodies_a_round_trip_would_change_are_refused_in_one_line(
        client: httpx.AsyncClient, queue: Queue, body: bytes, error: str) -> None:
    response = await post_raw(client, body)
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert await total(queue) == 0


async def test_an_amount_beyond_64_bits_is_dead_lettered_never_rounded(
        tmp_path: Path, sf: StreamflowSettings, queue: Queue, queue_name: str) -> None:
    settings = ledger_settings("sqlite", tmp_path, None, queue=queue_name)
    app = create_app(settings, queue=queue)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingress") as client:
        assert (await post_raw(client, event_text(amount=str(BIG)).encode(), "evt_Big01")
                ).status_code == 200
    async with throwaway_ledger(settings) as ledger:
        worker = Worker(queue_name, build_router(ledger, settings), settings=sf)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            dead = await wait_for(queue.dead, what="the dead letter")
            await worker.close()
        assert str(BIG) in dead[0]["error"] and "64-bit" in dead[0]["error"]
        assert await ledger.get(PAYMENTS, "pay_Hand0000000001") is None


# ------------------------------------------------------------------ time and ids


async def test_events_older_than_the_dedup_window_are_refused_and_counted(
        client: httpx.AsyncClient, queue: Queue, reader: InMemoryMetricReader) -> None:
    window = queue.settings.queue.dedup_ttl
    old = sign_event(sample_event("payment.captured", created_at=now() - int(window) - 60),
                     SECRET)
    response = await client.post(WEBHOOK, content=old.body, headers=old.headers())
    assert response.status_code == 400
    assert "older than" in response.json()["error"]
    future = sign_event(sample_event("payment.captured", created_at=now() + 3600), SECRET)
    response = await client.post(WEBHOOK, content=future.body, headers=future.headers())
    assert (response.status_code, response.json()) == (
        400, {"error": "event created in the future"})
    fresh = sign_event(sample_event("payment.captured", created_at=now() - 3600), SECRET)
    assert (await client.post(WEBHOOK, content=fresh.body, headers=fresh.headers())
            ).status_code == 200
    assert await total(queue) == 1
    assert refused_counts(reader) == {"stale": 1, "future": 1}


def test_an_age_window_longer_than_the_dedup_ttl_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="dedup TTL"):
        create_app(razorpay_settings(max_event_age=7 * 86400),
                   StreamflowSettings.from_url("redis://127.0.0.1:1/0"))


@pytest.mark.parametrize("event_id", ["a" * 65, "evt:1", "evt-1", "../x", "evt 1", "\u00e9vt"],
                         ids=["too-long", "colon", "dash", "path", "space", "non-ascii"])
async def test_an_event_id_of_another_shape_never_becomes_a_key(
        client: httpx.AsyncClient, queue: Queue, event_id: str) -> None:
    webhook = sign_event(sample_event("payment.captured"), SECRET)
    headers = {**webhook.headers(), "x-razorpay-event-id": event_id}
    response = await client.post(WEBHOOK, content=webhook.body,
                                 headers={k: v.encode() for k, v in headers.items()})
    assert response.status_code == 400
    assert "bad event id" in response.json()["error"]
    assert await total(queue) == 0


# ------------------------------------------------------------- refusals and their logs


async def test_forged_requests_are_counted_but_logged_once_per_interval(
        client: httpx.AsyncClient, reader: InMemoryMetricReader,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="consumers.razorpay")
    webhook = sign_event(sample_event("payment.captured"), SECRET)
    for _ in range(50):
        await client.post(WEBHOOK, content=webhook.body,
                          headers={**webhook.headers(), "x-razorpay-signature": "0" * 64})
    lines = [r for r in caplog.records if "webhook refused (signature)" in r.getMessage()]
    assert len(lines) == 1
    assert client.app.state.ingress.refused["signature"] == 50  # type: ignore[attr-defined]
    assert refused_counts(reader) == {"signature": 50}


def test_the_refusal_log_reports_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="consumers.razorpay")
    clock = [0.0]
    limiter = RefusalLog(10.0, clock=lambda: clock[0])
    refusal = Refused(400, "invalid signature", "signature")
    for _ in range(30):
        limiter.refused(refusal, 10)
    clock[0] = 10.0
    limiter.refused(refusal, 10)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "and 29 more since the last report" in messages[1]


# --------------------------------------------------------------------- Content-Length


async def call_app(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """The app called directly as an ASGI server would, without any server's own checks."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": WEBHOOK, "raw_path": WEBHOOK.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": (HOST, 1), "server": (HOST, 80)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.parametrize("declared", [b"\xb2", b"\xb9\xb3", b"+5", b" 5", b"1" * 40],
                         ids=["superscript-2", "superscript-13", "plus", "space", "huge"])
async def test_only_ascii_digits_make_a_content_length(queue: Queue, declared: bytes) -> None:
    app = create_app(razorpay_settings(), queue=queue)
    body = b"{}"
    status = await call_app(app, [(b"content-length", declared),
                                  (b"x-razorpay-signature", sign(body, SECRET).encode())], body)
    assert status == 400
    assert await total(queue) == 0


# --------------------------------------------------------------------- slow clients


@pytest.fixture
def guarded(sf: StreamflowSettings, queue_name: str) -> Iterator[ServerThread]:
    settings = razorpay_settings(queue=queue_name, header_timeout=0.5, body_timeout=0.5,
                                 max_connections=3)
    with ServerThread(create_app(settings, sf), settings) as server:
        yield server


def _closed_or_answered(sock: socket.socket, wait: float) -> bytes | None:
    """What the server sent (b"" when it closed) within ``wait`` seconds, None if nothing."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable:
        return None
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def slow_headers(port: int, lines: int, interval: float) -> tuple[int, bytes]:
    """Send request headers one line every ``interval`` s; how many went out before the server
    closed the connection or answered, and what it answered."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(f"POST {WEBHOOK} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
        for sent in range(lines):
            answer = _closed_or_answered(sock, interval)
            if answer is not None:
                return sent, answer
            try:
                sock.sendall(f"X-Slow-{sent}: y\r\n".encode())
            except OSError:
                return sent, b""
        return lines, b""


def slow_body(port: int, size: int, interval: float) -> tuple[int, bytes]:
    """Send complete headers, then the body one byte every ``interval`` s."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall((f"POST {WEBHOOK} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {size}\r\n"
                      f"X-Razorpay-Signature: {'0' * 64}\r\n\r\n").encode())
        for sent in range(size):
            answer = _closed_or_answered(sock, interval)
            if answer is not None:
                return sent, answer
            try:
                sock.sendall(b"x")
            except OSError:
                return sent, b""
        return size, b""


async def test_a_client_sending_headers_slowly_is_disconnected(guarded: ServerThread) -> None:
    sent, answer = await anyio.to_thread.run_sync(slow_headers, guarded.port, 100, 0.2)
    assert sent < 100, "the server held a slow-header connection for 20 s"
    assert answer == b""


async def test_a_client_sending_the_body_slowly_gets_408(guarded: ServerThread,
                                                         queue: Queue) -> None:
    sent, answer = await anyio.to_thread.run_sync(slow_body, guarded.port, 100, 0.2)
    assert sent < 100, "the server waited 20 s for a slow body"
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert await total(queue) == 0


async def test_connections_past_the_limit_get_503(guarded: ServerThread) -> None:
    held = [socket.create_connection((HOST, guarded.port), timeout=5) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # headers never finished
        async with httpx.AsyncClient(base_url=guarded.url) as client:
            assert (await client.get("/healthz")).status_code == 503
            for sock in held:
                sock.close()

            async def served() -> bool:
                async with httpx.AsyncClient(base_url=guarded.url) as fresh:
                    return (await fresh.get("/healthz")).status_code == 200

            await wait_for(served, what="a request served once the slow clients left")
    finally:
        for sock in held:
            sock.close()


def idle_after_one_request(port: int, wait: float) -> bytes | None:
    """Send one keep-alive request, read its answer, then stay idle: what the server sent
    within ``wait`` seconds (b"" when it closed the connection), None if nothing."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        answer = _closed_or_answered(sock, 5)
        assert answer is not None and answer.startswith(b"HTTP/1.1 200"), answer
        return _closed_or_answered(sock, wait)


async def test_an_idle_keep_alive_connection_is_closed(sf: StreamflowSettings,
                                                       queue_name: str) -> None:
    # The header deadline (30 s) is far: only the keep-alive timeout can close it in time.
    settings = razorpay_settings(queue=queue_name, keep_alive_timeout=0.3, header_timeout=30)
    with ServerThread(create_app(settings, sf), settings) as server:
        assert await anyio.to_thread.run_sync(idle_after_one_request, server.port, 10) == b""


async def test_keep_alive_requests_still_work_under_the_header_deadline(
        guarded: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=guarded.url) as client:
        for _ in range(5):
            assert (await client.get("/healthz")).status_code == 200
