"""End to end: signed HTTP request -> ingress (real uvicorn) -> Redis -> worker -> ledger row."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumers.razorpay.handlers import build_router
from consumers.razorpay.ingress import create_app
from consumers.razorpay.sample import (
    now,
    order_paid_event,
    payment_event,
    refund_event,
    sample_webhooks,
    sign_event,
)
from consumers.razorpay.settings import RazorpaySettings
from consumers.razorpay.store import ORDERS, PAYMENTS, REFUNDS, Ledger
from streamflow import StreamflowSettings, Worker, telemetry
from tests.integration.razorpay_support import (
    SECRET,
    ServerThread,
    ledger_settings,
    throwaway_ledger,
    wait_for,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path, queue_name: str) -> RazorpaySettings:
    return ledger_settings("sqlite", tmp_path, None, queue=queue_name, db_retry_delay=0.2)


@pytest.fixture
def sf(redis_url: str) -> StreamflowSettings:
    return StreamflowSettings.from_url(redis_url, worker={"block_ms": 100,
                                                          "shutdown_grace": 5.0})


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """An SDK provider for the ingress's and streamflow's spans (the global one is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer_provider(provider)
    yield provider, exporter
    telemetry.use_tracer_provider(None)
    provider.shutdown()


@pytest.fixture
def spans(tracing: tuple[TracerProvider, InMemorySpanExporter]) -> InMemorySpanExporter:
    return tracing[1]


@pytest.fixture
async def pipeline(settings: RazorpaySettings, sf: StreamflowSettings,
                   tracing: tuple[TracerProvider, InMemorySpanExporter],
                   ) -> AsyncIterator[tuple[str, Ledger]]:
    """The ingress on a real port and a worker applying to a fresh SQLite ledger."""
    async with throwaway_ledger(settings) as ledger:
        worker = Worker(settings.queue, build_router(ledger, settings), settings=sf,
                        concurrency=8)
        app = create_app(settings, sf, tracer_provider=tracing[0])
        with ServerThread(app) as server:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                yield server.url, ledger
                await worker.close()


async def send(client: httpx.AsyncClient, body: dict[str, Any], event_id: str) -> str:
    hook = sign_event(body, SECRET, event_id)
    response = await client.post("/webhooks/razorpay", content=hook.body,
                                 headers=hook.headers())
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def test_a_checkout_flows_from_http_to_the_ledger(
        pipeline: tuple[str, Ledger], spans: InMemorySpanExporter) -> None:
    url, ledger = pipeline
    t = now() - 100  # signed times within the ingress's age window, in this order
    pay, order, refund = "pay_E2eCheckout001", "order_E2eCheckout1", "rfnd_E2eCheckout01"
    async with httpx.AsyncClient(base_url=url) as client:
        # out of order and redelivered, as Razorpay may
        assert await send(client, payment_event("payment.captured", pay, order_id=order,
                                                created_at=t + 20, entity_created_at=t + 10),
                          "evt_E2e_captured") == "queued"
        assert await send(client, payment_event("payment.authorized", pay, order_id=order,
                                                created_at=t + 15, entity_created_at=t + 10),
                          "evt_E2e_authorized") == "queued"
        assert await send(client, order_paid_event(order, pay, created_at=t + 21,
                                                   entity_created_at=t + 10),
                          "evt_E2e_order") == "queued"
        for _ in range(3):
            assert await send(client, refund_event(
                "refund.processed", refund, pay, amount=12_500, created_at=t + 90,
                entity_created_at=t + 80, payment_created_at=t + 10), "evt_E2e_refund") in (
                "queued", "duplicate")

    async def refunded() -> dict[str, Any] | None:
        row = await ledger.get(PAYMENTS, pay)
        return row if row and row["amount_refunded"] and row["status"] == "captured" else None

    payment = await wait_for(refunded, what="the payment row")
    await wait_for(lambda: ledger.applied("evt_E2e_authorized"), what="the late authorization")
    payment = await ledger.get(PAYMENTS, pay)
    assert payment is not None
    assert (payment["status"], payment["amount"], payment["order_id"],
            payment["amount_refunded"], payment["refund_status"]) == (
        "captured", 50_000, order, 12_500, "partial")
    assert (await ledger.get(ORDERS, order) or {}).get("status") == "paid"
    assert (await ledger.get(REFUNDS, refund) or {}).get("status") == "processed"
    assert await ledger.count_applied() == 4

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    server_span = next(s for s in finished if s.name == "POST /webhooks/razorpay"
                       and (s.attributes or {}).get("webhook.event_id") == "evt_E2e_captured")
    in_trace = [s.name for s in finished
                if s.context is not None and server_span.context is not None
                and s.context.trace_id == server_span.context.trace_id]
    assert any(name.startswith("publish ") for name in in_trace), in_trace
    assert any(name.startswith("process ") for name in in_trace), in_trace


async def test_sample_traffic_is_applied_exactly_once(pipeline: tuple[str, Ledger]) -> None:
    url, ledger = pipeline
    hooks = sample_webhooks(60, SECRET, seed=3)
    async with httpx.AsyncClient(base_url=url) as client:
        for hook in [*hooks, *hooks[:20]]:
            response = await client.post("/webhooks/razorpay", content=hook.body,
                                         headers=hook.headers())
            assert response.status_code == 200

    async def all_applied() -> bool:
        return await ledger.count_applied() == len(hooks)

    await wait_for(all_applied, what="every sample event")
    await anyio.sleep(0.2)
    assert await ledger.count_applied() == len(hooks)


async def test_a_valid_replay_under_a_new_event_id_changes_nothing_in_the_ledger(
        pipeline: tuple[str, Ledger]) -> None:
    """The event id is an unsigned header: an attacker holding one signed delivery can send it
    again under new ids (within the age window). The ledger must not move."""
    url, ledger = pipeline
    t = now() - 100
    pay, refund = "pay_E2eReplay00001", "rfnd_E2eReplay0001"
    capture = payment_event("payment.captured", pay, created_at=t, entity_created_at=t)
    refunded = refund_event("refund.processed", refund, pay, amount=7_000, created_at=t + 5,
                            entity_created_at=t + 5, payment_created_at=t)
    async with httpx.AsyncClient(base_url=url) as client:
        assert await send(client, capture, "evt_Replay_capture") == "queued"
        assert await send(client, refunded, "evt_Replay_refund") == "queued"
        await wait_for(lambda: ledger.applied("evt_Replay_refund"), what="the refund")
        before = await rows(ledger, pay, refund)
        for number in range(3):
            assert await send(client, refunded, f"evt_Replay_forged{number}") == "queued"
            assert await send(client, capture, f"evt_Replay_forgedc{number}") == "queued"
        for number in range(3):
            await wait_for(lambda n=number: ledger.applied(f"evt_Replay_forged{n}"),
                           what="the replays")
            await wait_for(lambda n=number: ledger.applied(f"evt_Replay_forgedc{n}"),
                           what="the replays")
    assert await rows(ledger, pay, refund) == before
    assert before[0]["amount_refunded"] == 7_000


async def rows(ledger: Ledger, pay: str, refund: str) -> list[dict[str, Any]]:
    """The payment and refund rows, without the write-time bookkeeping column."""
    found = [await ledger.get(PAYMENTS, pay), await ledger.get(REFUNDS, refund)]
    return [{k: v for k, v in (row or {}).items() if k != "updated_ms"} for row in found]
