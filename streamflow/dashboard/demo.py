"""A seeded demo queue to look at: ``make dashboard`` (served) and ``make screenshots``.

``python -m streamflow.dashboard.demo`` uses the Redis of the settings (or starts a throwaway
one), fills the queue ``payments-demo`` once with Razorpay-like webhooks (completed ones, dead
ones with errors and tracebacks, a waiting backlog, delayed reminders), keeps a slow worker
running so the counts move, and serves the dashboard on 127.0.0.1:8090 until Ctrl-C.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from contextlib import ExitStack
from typing import Any

import anyio

from ..backoff import Backoff
from ..connection import redact
from ..errors import Discard
from ..job import Job
from ..localredis import local_redis
from ..queue import JobSpec, Queue
from ..router import Router
from ..settings import StreamflowSettings
from ..worker import Worker

DEMO_QUEUE = "payments-demo"
router = Router()


@router.handler("payment.captured")
async def payment_captured(job: Job) -> dict[str, Any]:
    await anyio.sleep(float(os.environ.get("STREAMFLOW_DEMO_DELAY", "0.01")))
    amount = job.data.get("amount", 0)
    if amount <= 0:
        raise Discard(f"amount must be positive, got {amount}")
    return {"ledger": "posted", "payment_id": job.data["payment_id"]}


@router.handler("refund.created")
async def refund_created(job: Job) -> dict[str, Any]:
    await anyio.sleep(float(os.environ.get("STREAMFLOW_DEMO_DELAY", "0.01")))
    if job.data.get("amount", 0) > job.data.get("captured", 0):
        raise Discard("refund amount exceeds the captured amount")
    return {"ledger": "reversed"}


@router.handler("settlement.sync")
async def settlement_sync(job: Job) -> None:
    if job.data.get("bank") == "unreachable":
        raise ConnectionError("settlement API answered 503 Service Unavailable")


def _payment(rng: random.Random, i: int, *, amount: int | None = None) -> dict[str, Any]:
    name = rng.choice(["asha", "ravi", "meera", "kabir", "zoya", "arjun"])
    return {
        "event": "payment.captured", "payment_id": f"pay_{rng.getrandbits(48):012x}",
        "order_id": f"order_{rng.getrandbits(40):010x}",
        "amount": amount if amount is not None else rng.choice([49900, 129900, 9900, 250000]),
        "currency": "INR", "method": rng.choice(["upi", "card", "netbanking"]),
        "vpa": f"{name}@okaxis", "email": f"{name}.{i}@example.com",
        "contact": f"+9198{rng.randrange(10**8):08d}",
        "notes": {"shipping": "express", "cart_items": rng.randrange(1, 6)},
    }


async def seed(q: Queue, *, backlog: int = 1500, seed_value: int = 14) -> None:
    """Fill ``q`` with finished, dead, waiting and delayed jobs (runs a worker briefly)."""
    rng = random.Random(seed_value)
    once = Backoff.fixed(0.05)
    defaults: Any = q.settings.queue
    if hasattr(defaults, "index_fields"):  # findable by payment id (with the job API)
        defaults.index_fields = ["payment_id", "order_id", "refund_id"]
    first: list[JobSpec] = []
    for i in range(40):
        data = _payment(rng, i, amount=0 if i % 13 == 5 else None)
        first.append(JobSpec("payment.captured", data, priority="high",
                             job_id=f"evt_{rng.getrandbits(56):014x}"))
    for i in range(8):
        first.append(JobSpec("refund.created", {
            "refund_id": f"rfnd_{rng.getrandbits(40):010x}", "captured": 49900,
            "amount": 59900 if i % 4 == 0 else 9900}, job_id=f"evt_{rng.getrandbits(56):014x}"))
    for i in range(3):
        first.append(JobSpec("settlement.sync", {"bank": "unreachable", "batch": i},
                             attempts=2, backoff=once, job_id=f"stl_{i}"))
    await q.add_bulk(first)
    worker = Worker(q.name, router, settings=q.settings, concurrency=8,
                    consumer="demo-seeder")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        with anyio.move_on_after(30):
            while True:
                counts = await q.counts()
                if not (counts["waiting"] or counts["pending"] or counts["delayed"]):
                    break
                await anyio.sleep(0.1)
        await worker.close()
    specs = [JobSpec("payment.captured", _payment(rng, i),
                     priority=rng.choice(["high", "normal", "normal", "normal", "low"]))
             for i in range(backlog)]
    specs += [JobSpec("settlement.sync", {"bank": "hdfc", "batch": 100 + i},
                      delay=3600 + 60 * i) for i in range(12)]
    await q.add_bulk(specs)


async def _seed_once(settings: StreamflowSettings) -> None:
    async with Queue(DEMO_QUEUE, settings=settings) as q:
        counts = await q.counts()
        if counts["waiting"] or counts["dead"] or counts["delayed"]:
            print(f"queue     {DEMO_QUEUE} already has jobs: left as it is")
        else:
            print(f"queue     {DEMO_QUEUE}: seeding (a worker runs a few seconds)")
            await seed(q)


def main() -> int:
    """Seed the demo queue, run a slow worker, serve the dashboard until Ctrl-C."""
    port = int(os.environ.get("STREAMFLOW_DASHBOARD_PORT", "8090"))
    settings = StreamflowSettings()
    with ExitStack() as stack:
        url, started = local_redis(settings.redis.url, stack)
        print(f"redis     {redact(url)}{' (started for the demo)' if started else ''}")
        settings = settings.model_copy(deep=True)
        settings.redis.url = url
        anyio.run(_seed_once, settings)
        env = {**os.environ, "STREAMFLOW_REDIS_URL": url, "STREAMFLOW_PREFIX": settings.prefix,
               "STREAMFLOW_DEMO_DELAY": "0.5"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "streamflow", "worker", DEMO_QUEUE, "--app",
             "streamflow.dashboard.demo:router", "--concurrency", "2", "--consumer",
             "demo-worker", "--log-level", "WARNING"], env=env)
        print(f"worker    pid {worker.pid}: 2 jobs at a time, 0.5 s each")
        print(f"dashboard http://127.0.0.1:{port}/   (Ctrl-C stops everything)")
        try:
            return subprocess.call(
                [sys.executable, "-m", "streamflow", "dashboard", "--port", str(port)],
                env=env)
        except KeyboardInterrupt:
            return 0
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    sys.exit(main())
