"""The payment ledger on SQLite and on the local PostgreSQL: idempotent, order-tolerant, retried."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest

from consumers.razorpay.handlers import build_router, updates_for
from consumers.razorpay.sample import (
    new_id,
    order_paid_event,
    payment_event,
    refund_event,
    sample_event,
)
from consumers.razorpay.settings import RazorpaySettings
from consumers.razorpay.store import (
    ORDERS,
    PAYMENTS,
    REFUNDS,
    AppliedEvent,
    Ledger,
    LedgerUnavailable,
)
from streamflow import Queue, StreamflowSettings, Worker
from tests.integration.razorpay_support import (
    ledger_settings,
    postgres_dsn,
    throwaway_ledger,
    wait_for,
)

pytestmark = pytest.mark.anyio

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
VOLATILE = {"id", "updated_ms"}


@pytest.fixture(params=BACKENDS)
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> RazorpaySettings:
    dsn = None
    if request.param == "postgres":
        dsn = await postgres_dsn()
        if dsn is None:
            pytest.skip("no PostgreSQL answers on 127.0.0.1:5432 (database test, user "
                        "postgres or root, trust auth)")
    return ledger_settings(request.param, tmp_path, dsn, db_lock_timeout=0.2,
                           db_retry_delay=0.3)


@pytest.fixture
async def ledger(settings: RazorpaySettings) -> AsyncIterator[Ledger]:
    async with throwaway_ledger(settings) as ledger:
        yield ledger


async def deliver(ledger: Ledger, body: dict[str, Any], event_id: str | None = None,
                  attempt: int = 1) -> bool:
    """Apply one webhook body as the handler would."""
    entity_id, updates = updates_for(body["event"], body)
    event = AppliedEvent(event_id or new_id(), body["event"], body["created_at"], entity_id,
                         attempt)
    return await ledger.apply(event, updates)


def state(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None
    return {key: value for key, value in row.items() if key not in VOLATILE}


async def test_the_schema_is_created_on_start_and_creating_it_again_is_harmless(
        ledger: Ledger) -> None:
    await ledger.create_schema()
    await ledger.create_schema()
    assert await ledger.get(PAYMENTS, "pay_none") is None
    assert await ledger.count_applied() == 0


async def test_an_event_id_already_applied_is_a_no_op(ledger: Ledger) -> None:
    body = payment_event("payment.captured", "pay_Idem", created_at=100)
    assert await deliver(ledger, body, "evt_1")
    before = await ledger.get(PAYMENTS, "pay_Idem")
    failed = payment_event("payment.failed", "pay_Idem", created_at=200)
    assert not await deliver(ledger, failed, "evt_1")
    assert not await deliver(ledger, body, "evt_1", attempt=2)
    assert await ledger.get(PAYMENTS, "pay_Idem") == before
    applied = await ledger.applied("evt_1")
    assert applied is not None
    assert (applied["event"], applied["entity_id"], applied["attempt"]) == (
        "payment.captured", "pay_Idem", 1)
    assert await ledger.count_applied() == 1


async def test_a_capture_before_its_authorization_never_moves_back(ledger: Ledger) -> None:
    assert await deliver(ledger, payment_event("payment.captured", "pay_Ooo", created_at=20))
    assert await deliver(ledger, payment_event("payment.authorized", "pay_Ooo", created_at=10))
    assert await deliver(ledger, payment_event("payment.failed", "pay_Ooo", created_at=30))
    row = await ledger.get(PAYMENTS, "pay_Ooo")
    assert row is not None
    assert (row["status"], row["status_at"], row["amount"]) == ("captured", 20, 50_000)
    assert row["error_code"] is None


async def test_a_failed_payment_stays_failed_unless_captured(ledger: Ledger) -> None:
    await deliver(ledger, payment_event("payment.failed", "pay_F", created_at=10))
    await deliver(ledger, payment_event("payment.authorized", "pay_F", created_at=5))
    row = await ledger.get(PAYMENTS, "pay_F")
    assert row is not None and (row["status"], row["error_code"]) == (
        "failed", "BAD_REQUEST_ERROR")


async def test_every_ordering_of_a_checkout_ends_in_the_same_rows(ledger: Ledger) -> None:
    def checkout(payment_id: str, refund_id: str) -> list[dict[str, Any]]:
        return [
            payment_event("payment.authorized", payment_id, created_at=10,
                          entity_created_at=9),
            payment_event("payment.captured", payment_id, created_at=11, entity_created_at=9),
            refund_event("refund.created", refund_id, payment_id, amount=20_000, created_at=50,
                         entity_created_at=50, payment_created_at=9),
            refund_event("refund.processed", refund_id, payment_id, amount=20_000,
                         created_at=60, entity_created_at=50, payment_created_at=9),
        ]

    outcomes = set()
    for n, order in enumerate(itertools.permutations(range(4))):
        payment_id, refund_id = f"pay_Perm{n:02d}", f"rfnd_Perm{n:02d}"
        events = checkout(payment_id, refund_id)
        for i in order:
            assert await deliver(ledger, events[i])
        payment = state(await ledger.get(PAYMENTS, payment_id))
        refund = state(await ledger.get(REFUNDS, refund_id))
        refund.pop("payment_id")
        outcomes.add((tuple(sorted(payment.items())), tuple(sorted(refund.items()))))
    assert len(outcomes) == 1
    [(payment_items, refund_items)] = outcomes
    payment, refund = dict(payment_items), dict(refund_items)
    assert (payment["status"], payment["amount_refunded"], payment["refund_status"]) == (
        "captured", 20_000, "partial")
    assert (refund["status"], refund["amount"], refund["speed_processed"]) == (
        "processed", 20_000, "normal")


async def test_refunds_accumulate_per_refund_id_without_double_counting(ledger: Ledger) -> None:
    pay = "pay_Refunds"
    await deliver(ledger, payment_event("payment.captured", pay, amount=50_000, created_at=1))
    first = refund_event("refund.processed", "rfnd_1", pay, amount=10_000, created_at=5)
    assert await deliver(ledger, first, "evt_r1")
    assert not await deliver(ledger, first, "evt_r1")
    assert await deliver(ledger, first, "evt_r1_again")  # same refund, another delivery id
    await deliver(ledger, refund_event("refund.created", "rfnd_2", pay, amount=15_000,
                                       created_at=6))
    row = await ledger.get(PAYMENTS, pay)
    assert row is not None and (row["amount_refunded"], row["refund_status"]) == (
        10_000, "partial")
    await deliver(ledger, refund_event("refund.processed", "rfnd_2", pay, amount=15_000,
                                       created_at=7))
    await deliver(ledger, refund_event("refund.created", "rfnd_1", pay, amount=10_000,
                                       created_at=4))
    await deliver(ledger, refund_event("refund.failed", "rfnd_3", pay, amount=5_000,
                                       created_at=8))
    row = await ledger.get(PAYMENTS, pay)
    assert row is not None and row["amount_refunded"] == 25_000
    await deliver(ledger, refund_event("refund.processed", "rfnd_4", pay, amount=25_000,
                                       created_at=9))
    row = await ledger.get(PAYMENTS, pay)
    assert row is not None and (row["amount_refunded"], row["refund_status"]) == (
        50_000, "full")
    states = {rid: (await ledger.get(REFUNDS, rid) or {}).get("status")
              for rid in ("rfnd_1", "rfnd_2", "rfnd_3", "rfnd_4")}
    assert states == {"rfnd_1": "processed", "rfnd_2": "processed", "rfnd_3": "failed",
                      "rfnd_4": "processed"}


async def test_a_refund_before_its_payment_is_counted_once_the_payment_arrives(
        ledger: Ledger) -> None:
    body = refund_event("refund.processed", "rfnd_Early", "pay_Late", amount=3_000,
                        created_at=9)
    del body["payload"]["payment"]
    await deliver(ledger, body)
    await deliver(ledger, payment_event("payment.captured", "pay_Late", amount=3_000,
                                        created_at=2))
    row = await ledger.get(PAYMENTS, "pay_Late")
    assert row is not None
    assert (row["status"], row["amount"], row["amount_refunded"], row["refund_status"]) == (
        "captured", 3_000, 3_000, "full")


async def test_order_paid_marks_the_order_and_captures_the_payment(ledger: Ledger) -> None:
    await deliver(ledger, payment_event("payment.authorized", "pay_O", order_id="order_O",
                                        created_at=1))
    await deliver(ledger, order_paid_event("order_O", "pay_O", created_at=2))
    order = await ledger.get(ORDERS, "order_O")
    payment = await ledger.get(PAYMENTS, "pay_O")
    assert order is not None and (order["status"], order["amount_paid"]) == ("paid", 50_000)
    assert payment is not None and payment["status"] == "captured"


@pytest.mark.parametrize("event", ["subscription.charged", "settlement.processed",
                                   "payment.dispute.won", "invoice.paid"])
async def test_other_families_are_recorded(ledger: Ledger, event: str) -> None:
    assert await deliver(ledger, sample_event(event), "evt_family")
    applied = await ledger.applied("evt_family")
    assert applied is not None and applied["event"] == event


async def test_concurrent_deliveries_apply_once_and_sum_refunds(ledger: Ledger) -> None:
    pay = "pay_Concurrent"
    await deliver(ledger, payment_event("payment.captured", pay, amount=100_000, created_at=1))
    body = payment_event("payment.captured", pay, amount=100_000, created_at=1)
    results: list[bool] = []

    async def one(body: dict[str, Any], event_id: str | None) -> None:
        results.append(await deliver(ledger, body, event_id))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one, body, "evt_same")
        for n in range(8):
            tg.start_soon(one, refund_event("refund.processed", f"rfnd_C{n}", pay,
                                            amount=1_000, created_at=5), None)
    assert results.count(True) == 1 + 8
    row = await ledger.get(PAYMENTS, pay)
    assert row is not None and row["amount_refunded"] == 8_000


async def test_a_locked_database_is_reported_as_unavailable(
        ledger: Ledger, settings: RazorpaySettings) -> None:
    async with hold_write_lock(ledger, settings):
        with pytest.raises(LedgerUnavailable):
            await deliver(ledger, payment_event("payment.captured", "pay_Locked"), "evt_l")
    assert await deliver(ledger, payment_event("payment.captured", "pay_Locked"), "evt_l")


async def test_a_failing_db_write_is_retried_by_the_worker(
        ledger: Ledger, settings: RazorpaySettings, redis_url: str, queue_name: str) -> None:
    sf = StreamflowSettings.from_url(redis_url, worker={"block_ms": 100,
                                                        "shutdown_grace": 5.0})
    body = payment_event("payment.captured", "pay_Retried", created_at=3)
    worker = Worker(queue_name, build_router(ledger, settings), settings=sf, concurrency=2)
    async with Queue(queue_name, settings=sf) as queue, anyio.create_task_group() as tg:
        async with hold_write_lock(ledger, settings):
            assert await queue.add("payment.captured", body, job_id="evt_retried") is not None
            tg.start_soon(worker.run)

            async def retry_scheduled() -> bool:
                return (await queue.counts())["delayed"] > 0

            await wait_for(retry_scheduled, what="the retry after a failed write")
        applied = await wait_for(lambda: ledger.applied("evt_retried"), what="the retry")
        await worker.close()
    assert applied["attempt"] >= 2
    row = await ledger.get(PAYMENTS, "pay_Retried")
    assert row is not None and row["status"] == "captured"


def hold_write_lock(ledger: Ledger, settings: RazorpaySettings) -> Any:
    """Another connection holding the lock every ledger write needs."""
    if ledger.dialect == "sqlite":
        return _sqlite_lock(settings.sqlite_path)
    assert settings.database_url is not None
    return _postgres_lock(settings.database_url.get_secret_value(),
                          f"{ledger.prefix}applied_events")


class _sqlite_lock:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)

    async def __aenter__(self) -> None:
        self._conn.execute("BEGIN EXCLUSIVE")

    async def __aexit__(self, *exc: object) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


class _postgres_lock:
    def __init__(self, dsn: str, table: str) -> None:
        self._dsn, self._table = dsn, table
        self._conn: Any = None

    async def __aenter__(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.execute("BEGIN")
        await self._conn.execute(f"LOCK TABLE {self._table} IN ACCESS EXCLUSIVE MODE")

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.execute("ROLLBACK")
        await self._conn.close()
