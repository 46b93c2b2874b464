"""Delayed jobs and the promoter (one Lua script: N promoters never duplicate a job)."""

from __future__ import annotations

import time

import anyio
import pytest
from redis.asyncio import Redis

from streamflow import Job, JobSpec, Queue, Worker
from streamflow.scheduler import promote_due
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_a_delayed_job_runs_after_its_delay(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    started: dict[str, float] = {}

    async def handler(job: Job) -> None:
        started[job.id] = time.time()

    async with Queue(queue_name, settings=settings) as q:
        added = time.time()
        job_id = await q.add("remind", {}, delay=0.6, priority="high")
        now_id = await q.add("now", {})
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: len(started) == 2)
        assert job_id is not None and now_id is not None
        assert started[job_id] - added >= 0.6
        assert started[now_id] < started[job_id]
        assert (await q.counts())["delayed"] == 0
        assert await q.client.hlen(q.keys.jobs) == 0


async def test_ten_promoters_racing_move_each_job_exactly_once(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        specs = [JobSpec("tick", {"i": i}, delay=0.01, priority=("high", "normal", "low")[i % 3])
                 for i in range(600)]
        ids = await q.add_bulk(specs)
        await anyio.sleep(0.05)
        clients = [Redis.from_url(redis_url) for _ in range(10)]
        moved: list[int] = []

        async def promoter(client: Redis) -> None:
            while True:
                count, _ = await promote_due(client, q.keys, limit=25)
                if count == 0:
                    return
                moved.append(count)

        try:
            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(promoter, client)
        finally:
            for client in clients:
                await client.aclose()
        assert sum(moved) == 600
        seen: list[str] = []
        for stream in q.keys.streams:
            for _, fields in await q.client.xrange(stream):
                seen.append(fields[b"i"].decode())
        assert sorted(seen) == sorted(i for i in ids if i)
        assert await q.client.zcard(q.keys.delayed) == 0


async def test_promoter_reports_the_next_due_time(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        await q.add("later", {}, delay=60)
        moved, next_due = await promote_due(q.client, q.keys)
        assert moved == 0
        assert 59_000 < next_due - time.time() * 1000 <= 60_000
