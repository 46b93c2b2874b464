"""The order-dependent payment journal on an ordered partitioned queue: events of many payments
added concurrently, many workers, every payment's transitions applied in order. The same run
on a queue without order shows the handler really depends on it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from consumers.razorpay.handlers import build_lifecycle_router, ordering_key
from consumers.razorpay.journal import OutOfOrder, PaymentJournal
from consumers.razorpay.sample import new_id, payment_event, refund_event
from consumers.razorpay.settings import RazorpaySettings
from consumers.razorpay.store import Ledger
from streamflow import JobSpec, Queue, Worker
from tests.integration.razorpay_support import ledger_settings, throwaway_ledger
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


class SlowJournal(PaymentJournal):
    """The journal behind a handler that does some I/O first (a few ms, random)."""

    async def advance(self, event_id: str, payment_id: str, to: str) -> bool:
        await anyio.sleep(random.random() * 0.01)
        return await super().advance(event_id, payment_id, to)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    settings: RazorpaySettings = ledger_settings("sqlite", tmp_path, None)
    async with throwaway_ledger(settings) as ledger:
        yield ledger


def lifecycle(payment_id: str, refunds: int) -> list[dict[str, Any]]:
    events = [payment_event("payment.authorized", payment_id),
              payment_event("payment.captured", payment_id)]
    events += [refund_event("refund.processed", new_id("rfnd"), payment_id)
               for _ in range(refunds)]
    return events


async def run_lifecycles(ledger: Ledger, queue_name: str, redis_url: str, *,
                         ordered: bool | tuple[str, ...], payments: int = 60
                         ) -> tuple[dict[str, list[str]], dict[str, list[str]], int]:
    """Add the lifecycles of ``payments`` payments concurrently, run 3 workers until every
    event is journaled or dead; (histories, expected histories, dead letters)."""
    journal = SlowJournal(ledger.db, ledger.prefix)
    await journal.create_schema()
    settings = fast_settings(redis_url)
    rng = random.Random(15)
    plans: dict[str, list[dict[str, Any]]] = {}
    for _ in range(payments):
        payment_id = new_id("pay", rng)
        plans[payment_id] = lifecycle(payment_id, refunds=rng.randint(1, 2))
    expected = {pid: ["authorized", "captured", *["refunded"] * (len(evs) - 2)]
                for pid, evs in plans.items()}
    total = sum(len(evs) for evs in plans.values())
    async with Queue(queue_name, settings=settings, partitions=3, ordered=ordered) as q:
        async def produce(events: list[dict[str, Any]]) -> None:
            # one payment's events in order, back to back (so fetched together): one add
            # for the first, the rest in one bulk add; payments' producers run concurrently
            first, *rest = [JobSpec(body["event"], orjson.dumps(body).decode(),
                                    job_id=new_id("evt"),
                                    key=ordering_key(body["event"], body)) for body in events]
            await q.add(first.name, first.data, job_id=first.job_id, key=first.key)
            await q.add_bulk(rest)

        async with anyio.create_task_group() as tg:
            for events in plans.values():
                tg.start_soon(produce, events)
        router = build_lifecycle_router(journal)
        workers = [Worker(queue_name, router, settings=settings, concurrency=16)
                   for _ in range(3)]

        async def finished() -> bool:
            counts = await q.counts()
            return (counts["dead"] + await _journaled(journal) == total
                    and counts["waiting"] + counts["pending"] + counts["held"] == 0)

        async with running(*workers):
            await wait_until(finished, timeout=60)
        dead = (await q.counts())["dead"]
        histories = {pid: await journal.history(pid) for pid in plans}
        await q.obliterate(force=True)
    await journal.drop_schema()
    return histories, expected, dead


async def _journaled(journal: PaymentJournal) -> int:
    async with journal.db.transaction() as tx:
        row = await tx.fetchone(f"SELECT COUNT(*) AS n FROM {journal.rows}")
        return int(row["n"]) if row else 0


async def test_every_payment_moves_in_order_on_an_ordered_queue(
        ledger: Ledger, redis_url: str, queue_name: str) -> None:
    histories, expected, dead = await run_lifecycles(ledger, queue_name, redis_url,
                                                     ordered=("pay_",))
    assert dead == 0, "no transition was refused as out of order"
    assert histories == expected


async def test_without_order_the_same_run_refuses_transitions(
        ledger: Ledger, redis_url: str, queue_name: str) -> None:
    histories, expected, dead = await run_lifecycles(ledger, queue_name, redis_url,
                                                     ordered=False)
    assert dead > 0, "the handler depends on order: some events came too early"
    assert histories != expected


async def test_an_event_applied_twice_or_out_of_order_changes_nothing(ledger: Ledger) -> None:
    journal = PaymentJournal(ledger.db, ledger.prefix)
    await journal.create_schema()
    assert await journal.advance("evt_a", "pay_Twice", "authorized")
    assert not await journal.advance("evt_a", "pay_Twice", "authorized")  # a redelivery
    with pytest.raises(OutOfOrder):
        await journal.advance("evt_r", "pay_Twice", "refunded")  # not captured yet
    assert await journal.history("pay_Twice") == ["authorized"]
    assert await _journaled(journal) == 1
    assert await journal.advance("evt_c", "pay_Twice", "captured")
    assert await journal.history("pay_Twice") == ["authorized", "captured"]
    await journal.drop_schema()
