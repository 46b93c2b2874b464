"""Flow controls hold for a worker that waits for work: each test starts the worker first,
waits until it is idle (blocked on the level streams, claiming nothing), then acts.

Before the one fetch path, an idle worker fell back to a blocking XREADGROUP over all levels,
which ignored pause, the rate limit, strict priority and its free capacity.
"""

from __future__ import annotations

import anyio
import pytest

from streamflow import Job, JobSpec, Queue, Worker
from streamflow.worker.fetcher import FetchState
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def idle(worker: Worker) -> None:
    """Wait until ``worker`` waits for work in XREAD."""
    await wait_until(lambda: worker.fetcher.state is FetchState.WAITING)


async def fetch_rounds(worker: Worker, more: int) -> None:
    """Wait until ``worker`` asked the fetch script ``more`` more times."""
    target = worker.fetcher.rounds + more
    await wait_until(lambda: worker.fetcher.rounds >= target)


async def consumer_pending(q: Queue, worker: Worker) -> int:
    total = 0
    for stream in q.keys.streams:
        summary = await q.client.xpending(stream, worker.group)
        total += sum(int(c["pending"]) for c in summary["consumers"]
                     if c["name"] in (worker.consumer, worker.consumer.encode()))
    return total


async def test_pause_while_idle_holds_new_jobs(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.data)

    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, handler, settings=settings, concurrency=5)
        async with running(worker):
            await idle(worker)
            await q.pause()
            await q.add("j", 1)
            await wait_until(lambda: worker.fetcher.state is FetchState.PAUSED)
            await fetch_rounds(worker, 2)  # it looked again, and again found the queue paused
            assert ran == []
            assert (await q.counts())["waiting"] == 1
            assert await consumer_pending(q, worker) == 0


async def test_resume_while_idle_runs_what_waited(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.data)

    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, handler, settings=settings, concurrency=5)
        async with running(worker):
            await idle(worker)
            await q.pause()
            await q.add_bulk([("j", i) for i in range(3)])
            await wait_until(lambda: worker.fetcher.state is FetchState.PAUSED)
            await fetch_rounds(worker, 1)
            assert ran == []
            await q.resume()
            await wait_until(lambda: sorted(ran) == [0, 1, 2])
            await idle(worker)
            await q.add("j", 3)  # and the idle worker wakes for new work again
            await wait_until(lambda: len(ran) == 4)


async def test_rate_limit_while_idle(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.data)

    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, handler, settings=settings, concurrency=5)
        async with running(worker):
            await idle(worker)
            await q.set_rate_limit(1, 10.0)
            await q.add_bulk([("j", i) for i in range(5)])
            await wait_until(lambda: len(ran) == 1)
            await wait_until(lambda: worker.fetcher.state is FetchState.LIMITED)
            await fetch_rounds(worker, 1)  # asked again: still limited
            assert len(ran) == 1
            assert (await q.counts())["waiting"] == 4


async def test_capacity_holds_when_three_levels_arrive_at_once(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    started: list[str] = []
    release = anyio.Event()

    async def handler(job: Job) -> None:
        started.append(job.level)
        await release.wait()

    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, handler, settings=settings, concurrency=2)
        async with running(worker):
            await idle(worker)
            await q.add_bulk([JobSpec("j", i, priority=level)
                              for level in ("low", "normal", "high") for i in range(4)])
            await wait_until(lambda: len(started) == 2)
            await wait_until(lambda: worker.fetcher.state is FetchState.FULL)
            assert await consumer_pending(q, worker) == 2  # not one batch per level
            release.set()
            await wait_until(lambda: worker.processed == 12)
        assert started == ["high"] * 4 + ["normal"] * 4 + ["low"] * 4


async def test_strict_priority_while_idle(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    order: list[str] = []
    release = anyio.Event()

    async def handler(job: Job) -> None:
        order.append(job.data)
        if job.data == "h1":
            await release.wait()

    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, handler, settings=settings, concurrency=1)
        async with running(worker):
            await idle(worker)
            # a burst of low jobs, and after them (in the same add) a high one
            await q.add_bulk([JobSpec("j", f"l{i}", priority="low") for i in range(5)]
                             + [JobSpec("j", "h1", priority="high")])
            await wait_until(lambda: order == ["h1"])
            pending_low = await q.client.xpending(q.keys.level("low"), worker.group)
            assert pending_low["pending"] == 0  # no low job was taken while a high one waited
            await q.add("j", "h2", priority="high")
            release.set()
            await wait_until(lambda: len(order) == 7)
        assert order == ["h1", "h2", "l0", "l1", "l2", "l3", "l4"]
