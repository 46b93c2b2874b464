"""Queue-wide rate limits shared by all workers, and the handler's "provider said 429" signal."""

from __future__ import annotations

import bisect
import time

import pytest

from streamflow import Job, Queue, RateLimited, Worker
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.slow
async def test_four_workers_never_exceed_the_limit_in_any_window(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    starts: list[float] = []

    async def handler(job: Job) -> None:
        starts.append(time.time())

    async with Queue(queue_name, settings=settings) as q:
        # the margin covers the time between a grant and the handler's start, which on a
        # loaded 2-core machine running four workers in one event loop reaches ~200 ms
        await q.set_rate_limit(50, 1.0, margin=0.25)
        await q.add_bulk([("call.provider", i) for i in range(300)])
        workers = [Worker(queue_name, handler, settings=settings, concurrency=20)
                   for _ in range(4)]
        async with running(*workers):
            await wait_until(lambda: len(starts) == 300, timeout=30)
    starts.sort()
    busiest = max(bisect.bisect_left(starts, t + 1.0) - i for i, t in enumerate(starts))
    assert busiest <= 50
    assert starts[-1] - starts[0] >= 5.0  # 300 jobs at 50/s need five full windows
    assert sum(1 for w in workers if w.processed) >= 2  # the limit was shared, not one worker's


async def test_rate_limited_signal_reschedules_without_an_attempt_and_pauses_the_queue(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    runs: list[tuple[str, int, float]] = []

    async def handler(job: Job) -> None:
        runs.append((job.data, job.attempt, time.time()))
        if job.data == "first" and job.attempt == 1 and len(runs) == 1:
            raise RateLimited(0.5)

    async with Queue(queue_name, settings=settings) as q:
        await q.add("call", "first", attempts=1)
        worker = Worker(queue_name, handler, settings=settings, concurrency=1)
        async with running(worker):
            await wait_until(lambda: len(runs) == 1)
            limited_at = runs[0][2]
            await q.add("call", "second")
            await wait_until(lambda: len(runs) == 3)
        first_retry = next(r for r in runs[1:] if r[0] == "first")
        second = next(r for r in runs if r[0] == "second")
        assert first_retry[1] == 1  # the attempt was not spent (attempts=1 would be dead)
        assert second[2] - limited_at >= 0.45  # the whole queue waited
        assert (await q.counts())["dead"] == 0
        events = [f[b"e"] for _, f in await q.client.xrange(q.keys.events)]
        assert b"rate_limited" in events
        assert worker.failed == 0  # a rate limit is not a failure of the job
