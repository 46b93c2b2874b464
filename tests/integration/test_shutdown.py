"""SIGTERM: stop fetching, finish in-flight jobs, ack them, deregister, exit 0."""

from __future__ import annotations

import signal

import pytest

from streamflow import JobSpec, Queue
from tests.support import wait_until
from tests.workers import start_worker

pytestmark = pytest.mark.anyio


async def test_sigterm_finishes_in_flight_jobs(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        ids = await q.add_bulk([JobSpec("sleep", {"seconds": 1.0}) for _ in range(4)])
        later = await q.add_bulk([JobSpec("sleep", {"seconds": 0}) for _ in range(20)])
        proc = start_worker(redis_url, queue_name, consumer="term-1", concurrency=4)
        try:
            await wait_until(lambda: _started(q, 4), timeout=20)
            proc.send_signal(signal.SIGTERM)
            await wait_until(lambda: proc.poll() is not None, timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0
        finished = [entry.decode().rsplit(":", 1)[0]
                    for entry in await q.client.lrange(f"{queue_name}:log", 0, -1)]
        assert sorted(finished) == sorted(i for i in ids if i)  # all four in-flight finished
        counts = await q.counts()
        assert counts["pending"] == 0  # and were acked
        assert counts["waiting"] == len(later)  # nothing new was taken
        assert not await q.client.hexists(q.keys.workers, "term-1")


async def _started(q: Queue, n: int) -> bool:
    return int(await q.client.llen(f"{q.name}:started")) >= n
