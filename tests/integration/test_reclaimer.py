"""Stalled entries: reclaimed from consumers that stopped, dead-lettered past the cap, and
never taken from a live worker whose job is merely long."""

from __future__ import annotations

import anyio
import pytest

from streamflow import Job, Queue, Worker
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_entries_of_a_vanished_consumer_are_reclaimed_and_run(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    settings.worker.stalled_interval = 0.5
    done: list[tuple[str, int]] = []

    async def handler(job: Job) -> None:
        done.append((job.id, job.attempt))

    async with Queue(queue_name, settings=settings) as q:
        ids = await q.add_bulk([("j", i) for i in range(5)])
        # a consumer fetches them and dies without acking
        await q.client.xreadgroup("workers", "gone-consumer", {q.keys.level("normal"): ">"},
                                  count=5)
        assert (await q.counts())["pending"] == 5
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: len(done) == 5)
            await wait_until(lambda: _settled(q))
        assert sorted(done) == sorted((i, 1) for i in ids if i)  # no attempt spent
        events = [f[b"e"] for _, f in await q.client.xrange(q.keys.events)]
        assert events.count(b"reclaimed") == 5


async def _settled(q: Queue) -> bool:
    counts = await q.counts()
    return counts["pending"] == 0 and counts["waiting"] == 0


async def test_entries_delivered_too_often_go_dead_as_stalled(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    settings.worker.stalled_interval = 0.3
    settings.worker.max_stalled_count = 1
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    async with Queue(queue_name, settings=settings) as q:
        job_id = await q.add("poison", {})
        stream = q.keys.level("normal")
        await q.client.xreadgroup("workers", "crashed-1", {stream: ">"}, count=1)
        entry = (await q.client.xrange(stream))[0][0]
        await q.client.xclaim(stream, "workers", "crashed-2", 0, [entry])  # 2nd delivery
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: _dead_one(q))
        assert ran == []
        [dead] = await q.dead()
        assert dead["reason"] == "stalled" and dead["job_id"] == job_id
        assert (await q.counts())["pending"] == 0


async def _dead_one(q: Queue) -> bool:
    return (await q.counts())["dead"] == 1


async def test_a_long_job_is_kept_alive_and_not_stolen(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    settings.worker.stalled_interval = 0.6
    runs: list[str] = []

    async def slow(job: Job) -> None:
        runs.append(job.id)
        await anyio.sleep(2.5)  # four stalled intervals

    async with Queue(queue_name, settings=settings) as q:
        await q.add("slow", {}, timeout=10)
        first = Worker(queue_name, slow, settings=settings, consumer="first")
        second = Worker(queue_name, slow, settings=settings, consumer="second")
        async with running(first, second):
            await wait_until(lambda: first.processed + second.processed == 1, timeout=10)
            await anyio.sleep(0.7)
        assert len(runs) == 1
        events = [f[b"e"] for _, f in await q.client.xrange(q.keys.events)]
        assert b"reclaimed" not in events and b"stalled" not in events
