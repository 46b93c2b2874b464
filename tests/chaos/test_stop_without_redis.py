"""A worker asked to stop while its Redis is gone stops without waiting out the client's
connection retries (8 attempts with capped backoff: ~13 s before)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from streamflow import Job, Queue, Worker
from tests.servers import RedisProcess
from tests.support import fast_settings, wait_until

pytestmark = pytest.mark.anyio


async def test_close_returns_promptly_when_redis_is_down(tmp_path: Path, queue_name: str) -> None:
    with RedisProcess(tmp_path / "r", config=["maxmemory-policy noeviction"]) as server:
        settings = fast_settings(server.url)
        done: list[int] = []

        async def handler(job: Job) -> None:
            done.append(job.data)

        worker = Worker(queue_name, handler, settings=settings)
        async with Queue(queue_name, settings=settings) as q:
            await q.add("j", 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await wait_until(lambda: done == [1])
            server.kill()
            await wait_until(lambda: not worker.ready, timeout=10)
            started = time.monotonic()
            with anyio.fail_after(20):
                await worker.close()
            stopped_in = time.monotonic() - started
        print(f"stopped {stopped_in:.2f}s after close() with Redis down")
        assert worker.stopped
        assert stopped_in < 5  # neither the fetch nor the deregistration waits out the retries
