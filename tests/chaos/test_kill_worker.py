"""SIGKILL a worker mid-job: its entries stay pending and another worker completes them."""

from __future__ import annotations

import signal

import anyio
import anyio.lowlevel
import pytest

from streamflow import Job, JobSpec, Queue, Worker
from tests.support import fast_settings, running, wait_until
from tests.workers import start_worker

pytestmark = pytest.mark.anyio


async def test_a_killed_workers_jobs_are_completed_by_another(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        ids = await q.add_bulk([JobSpec("sleep", {"seconds": 30}) for _ in range(3)])
        proc = start_worker(redis_url, queue_name, consumer="doomed", concurrency=3)
        try:
            await wait_until(lambda: _started(q, 3), timeout=20)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        counts = await q.counts()
        assert counts["pending"] == 3  # held by the dead consumer, not lost

        settings = fast_settings(redis_url)
        settings.worker.stalled_interval = 0.5
        completed: list[str] = []

        async def rescue(job: Job) -> None:
            completed.append(job.id)

        async with running(Worker(queue_name, rescue, settings=settings, consumer="rescuer")):
            await wait_until(lambda: len(completed) == 3, timeout=15)
            await wait_until(lambda: _none_pending(q))
        assert sorted(completed) == sorted(i for i in ids if i)
        assert (await q.counts())["dead"] == 0
        await anyio.lowlevel.checkpoint()


async def _started(q: Queue, n: int) -> bool:
    return int(await q.client.llen(f"{q.name}:started")) >= n


async def _none_pending(q: Queue) -> bool:
    return (await q.counts())["pending"] == 0
