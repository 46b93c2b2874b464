"""Pause/resume, drain and obliterate."""

from __future__ import annotations

import anyio
import pytest

from streamflow import Job, Queue, Worker
from streamflow.errors import QueueBusy
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_pause_stops_fetching_while_adds_continue(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    done: list[int] = []

    async def handler(job: Job) -> None:
        await anyio.sleep(0.2)
        done.append(job.data)

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("j", i) for i in range(3)])
        worker = Worker(queue_name, handler, settings=settings, concurrency=3)
        async with running(worker):
            await wait_until(lambda: _pending(q, 3))
            await q.pause()
            assert await q.is_paused()
            await q.add_bulk([("j", i) for i in range(3, 13)])  # adds keep working
            await wait_until(lambda: len(done) == 3)  # in-flight jobs finish
            await anyio.sleep(0.6)  # more than a block interval
            counts = await q.counts()
            assert len(done) == 3 and counts["waiting"] == 10 and counts["pending"] == 0
            await q.resume()
            await wait_until(lambda: len(done) == 13)
        assert sorted(done) == list(range(13))
        events = [f[b"e"] for _, f in await q.client.xrange(q.keys.events)]
        assert b"paused" in events and b"resumed" in events


async def _pending(q: Queue, n: int) -> bool:
    return (await q.counts())["pending"] == n


async def test_drain_removes_waiting_and_delayed_but_not_in_flight(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    gate = anyio.Event()
    done: list[int] = []

    async def handler(job: Job) -> None:
        await gate.wait()
        done.append(job.data)

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("j", i) for i in range(2)])
        worker = Worker(queue_name, handler, settings=settings, concurrency=2)
        async with running(worker):
            await wait_until(lambda: _pending(q, 2))
            await q.add_bulk([("j", i) for i in range(2, 12)])
            await q.add("j", 99, delay=60)
            assert await q.drain() == 11
            gate.set()
            await wait_until(lambda: len(done) == 2)
            await anyio.sleep(0.3)
            await q.add("j", 100)
            await wait_until(lambda: len(done) == 3)
        assert sorted(done) == [0, 1, 100]
        counts = await q.counts()
        assert counts["waiting"] == 0 and counts["delayed"] == 0


async def test_obliterate_refuses_active_workers_unless_forced(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)

    async def handler(job: Job) -> None:
        return None

    async with Queue(queue_name, settings=settings) as q:
        await q.add("j", 1, job_id="evt_1")
        await q.add("j", 2, delay=60)
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed == 1)
            with pytest.raises(QueueBusy):
                await q.obliterate()
        assert await q.obliterate() > 0
        left = [k async for k in q.client.scan_iter(match=f"sf:{{{queue_name}}}*")]
        assert left == []
