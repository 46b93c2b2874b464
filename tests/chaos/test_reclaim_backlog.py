"""A SIGKILLed worker's jobs do not wait for the backlog (issue 11, item 3).

The survivor is busy: 40,000 jobs wait and its fetcher fills every slot as soon as it frees.
The dead worker's entries must still be reclaimed within ``stalled_interval`` plus one check
and run next, not after the backlog is empty. On the old code the reclaimer took stalled
entries only into free slots (about one per ``stalled_interval`` on a busy worker), so they
waited until the backlog was gone.
"""

from __future__ import annotations

import random
import signal

import anyio
import pytest

from streamflow import Job, JobSpec, Queue, Worker
from tests.support import fast_settings, running, wait_until
from tests.workers import start_worker

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

DOOMED = 500
BACKLOG = 40_000


async def test_a_killed_workers_jobs_jump_a_40k_backlog(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        doomed_ids = await q.add_bulk([JobSpec("sleep", {"seconds": 60})] * DOOMED)
        proc = start_worker(redis_url, queue_name, consumer="doomed", concurrency=DOOMED)
        try:
            await wait_until(lambda: _started(q, DOOMED), timeout=30)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        for _ in range(BACKLOG // 5000):
            await q.add_bulk([JobSpec("work", None)] * 5000)

        settings = fast_settings(redis_url)
        settings.worker.stalled_interval = 1.0
        backlog_done = 0
        rescued: list[str] = []
        backlog_done_at_rescue: list[int] = []

        async def handler(job: Job) -> None:
            nonlocal backlog_done
            if job.name == "sleep":
                rescued.append(job.id)
                if len(set(rescued)) == DOOMED:
                    backlog_done_at_rescue.append(backlog_done)
                return
            # a busy survivor: every slot taken all the time, the slots freed one by one
            await anyio.sleep(random.uniform(0.002, 0.010))
            backlog_done += 1

        worker = Worker(queue_name, handler, settings=settings, concurrency=10,
                        consumer="survivor")
        try:
            async with running(worker):
                await wait_until(lambda: bool(backlog_done_at_rescue) or backlog_done == BACKLOG,
                                 timeout=240)
            assert sorted(set(rescued)) == sorted(i for i in doomed_ids if i)
            # rescued while most of the backlog still waited (about stalled_interval + one
            # check of work at the survivor's rate), not after it
            assert backlog_done_at_rescue and backlog_done_at_rescue[0] < BACKLOG // 4
        finally:
            await q.obliterate(force=True)


async def _started(q: Queue, n: int) -> bool:
    return int(await q.client.llen(f"{q.name}:started")) >= n
