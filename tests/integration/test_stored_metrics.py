"""Per-minute completed/failed counts written by the ack scripts, read by ``Queue.metrics``."""

from __future__ import annotations

import pytest

from streamflow import Discard, Job, Queue, Worker
from streamflow.stored_metrics import minute_of
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_metrics_count_completed_and_dead_jobs_per_minute(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, attempts=1, metrics_window=3600)

    async def handler(job: Job) -> None:
        if job.data["n"] % 5 == 0:
            raise Discard("no")

    async with Queue(queue_name, settings=settings) as q:
        ids = await q.add_bulk([("pay", {"n": n}) for n in range(50)])
        tracked = await q.add("pay", {"n": 1}, job_id="evt_tracked")
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed + worker.failed == len(ids) + 1)
            await wait_until(lambda: _finished(q, len(ids) + 1))
        minutes = await q.metrics()
        assert sum(m.completed for m in minutes) == 41
        assert sum(m.failed for m in minutes) == 10
        assert len(minutes) in (61, 62) and minutes[-1].minute_ms == minute_of(
            minutes[-1].minute_ms)
        recent = await q.metrics(since=120)
        assert sum(m.completed for m in recent) == 41
        key = q.keys.metrics_minute(next(m.minute_ms for m in minutes if m.completed))
        assert 0 < await q.client.pttl(key) <= 3_660_000
        # a job with an id leaves the where record once it finished
        assert tracked == "evt_tracked" and await q.client.hlen(q.keys.where) == 0


async def _finished(q: Queue, total: int) -> bool:
    minutes = await q.metrics(since=600)
    return sum(m.completed + m.failed for m in minutes) >= total
