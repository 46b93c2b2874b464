"""The demo's last part: an order-dependent handler on an ordered partitioned queue.

The payment journal (`journal.PaymentJournal`) refuses a transition its payment's status does
not allow, so it is only correct when one payment's events run one at a time, in the order
they were added. The demo adds the lifecycles of many payments at once (each payment's events
in order, back to back; payments concurrently) on a queue of 4 partitions ordered for the
``pay_`` keys, runs 4 workers in this process, and checks every payment's journal.
"""

from __future__ import annotations

import random
import time
from functools import partial

import anyio
import orjson

from streamflow import JobSpec, Queue, StreamflowSettings, Worker

from .handlers import build_lifecycle_router, ordering_key
from .journal import PaymentJournal
from .sample import new_id, payment_event, refund_event
from .settings import RazorpaySettings
from .store import open_ledger

PAYMENTS = 100
PARTITIONS = 4
WORKERS = 4


async def run_ordered(settings: StreamflowSettings, razorpay: RazorpaySettings, queue: str,
                      timeout: float = 30.0) -> bool:
    """Run the ordered part of the demo on ``queue``; prints its lines; True when every
    payment's transitions were applied in order."""
    rng = random.Random(15)
    plans: dict[str, list[str]] = {}
    specs: list[list[JobSpec]] = []
    for _ in range(PAYMENTS):
        payment_id = new_id("pay", rng)
        bodies = [payment_event("payment.authorized", payment_id),
                  payment_event("payment.captured", payment_id)]
        bodies += [refund_event("refund.processed", new_id("rfnd", rng), payment_id)
                   for _ in range(rng.randint(1, 2))]
        plans[payment_id] = ["authorized", "captured", *["refunded"] * (len(bodies) - 2)]
        specs.append([JobSpec(body["event"], orjson.dumps(body).decode(), job_id=new_id(rng=rng),
                              key=ordering_key(body["event"], body)) for body in bodies])
    total = sum(len(events) for events in specs)
    started = time.monotonic()
    async with open_ledger(razorpay) as ledger, \
            Queue(queue, settings=settings, partitions=PARTITIONS, ordered=("pay_",)) as q:
        journal = PaymentJournal(ledger.db, ledger.prefix)
        await journal.create_schema()
        async with anyio.create_task_group() as tg:
            for events in specs:  # each payment's producer adds its events in order
                tg.start_soon(q.add_bulk, events)
        counts = await q.counts()
        print(f"ordered   {PAYMENTS} payments' lifecycles ({total} events) added at once on "
              f"{PARTITIONS} partitions, ordered by payment: {counts['waiting']} waiting, "
              f"{counts['held']} held behind an earlier event of their payment")
        router = build_lifecycle_router(journal)
        workers = [Worker(queue, router, settings=settings, concurrency=16)
                   for _ in range(WORKERS)]
        finished = False
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(partial(worker.run, handle_signals=False))
            with anyio.move_on_after(timeout):
                while not finished:
                    counts = await q.counts()
                    finished = counts["waiting"] + counts["pending"] + counts["held"] + \
                        counts["delayed"] == 0
                    await anyio.sleep(0.05)
            for worker in workers:
                await worker.close()
        histories = {pid: await journal.history(pid) for pid in plans}
        dead = (await q.counts())["dead"]
        await q.obliterate(force=True)
    in_order = sum(histories[pid] == expected for pid, expected in plans.items())
    print(f"          {WORKERS} workers x 16, strict journal (created -> authorized -> captured "
          f"-> refunded): {in_order}/{PAYMENTS} payments in order, {dead} refused, "
          f"{time.monotonic() - started:.1f}s")
    return finished and in_order == PAYMENTS and dead == 0
