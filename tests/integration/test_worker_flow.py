"""Worker: handlers, router, priority, concurrency, malformed input, timeouts."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from streamflow import Job, Queue, Router, Worker
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_async_and_sync_handlers_run_and_results_are_kept(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    router = Router()
    seen: list[tuple[str, Any]] = []

    @router.handler("double")
    async def double(job: Job) -> int:
        seen.append(("async", job.data))
        return int(job.data) * 2

    @router.handler("blocking")
    def blocking(job: Job) -> str:
        time.sleep(0.01)
        seen.append(("thread", job.data))
        return "ok"

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("double", i) for i in range(20)] + [("blocking", i) for i in range(5)])
        worker = Worker(queue_name, router, settings=settings, concurrency=8)
        async with running(worker):
            await wait_until(lambda: worker.processed == 25)
            await wait_until(lambda: _all_acked(q))
        assert sorted(d for kind, d in seen if kind == "async") == list(range(20))
        assert sorted(d for kind, d in seen if kind == "thread") == list(range(5))
        done = await q.client.xrange(q.keys.done)
        results = sorted(int(f[b"r"]) for _, f in done if f[b"n"] == b"double")
        assert results == [i * 2 for i in range(20)]
        counts = await q.counts()
        assert counts["pending"] == 0 and counts["waiting"] == 0 and counts["dead"] == 0


async def _all_acked(q: Queue) -> bool:
    counts = await q.counts()
    return counts["pending"] == 0 and counts["waiting"] == 0


async def test_unknown_job_name_is_dead_lettered(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    router = Router()
    router.add("known", lambda job: None)
    async with Queue(queue_name, settings=settings) as q:
        await q.add("unknown", {"x": 1})
        await q.add("known", {})
        async with running(Worker(queue_name, router, settings=settings)):
            await wait_until(lambda: _dead_count(q, 1))
        dead = await q.dead()
        assert dead[0]["reason"] == "no_handler" and dead[0]["name"] == "unknown"


async def _dead_count(q: Queue, n: int) -> bool:
    return (await q.counts())["dead"] >= n


async def test_malformed_entries_are_dead_lettered_and_the_worker_goes_on(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    done: list[int] = []

    async def handler(job: Job) -> None:
        done.append(job.data)

    async with Queue(queue_name, settings=settings) as q:
        stream = q.keys.level("normal")
        await q.add("ok", 1)
        await q.client.xadd(stream, {"garbage": "x"})
        await q.client.xadd(stream, {"n": "bad-json", "d": "{not json"})
        await q.client.xadd(stream, {"n": "bad-attempt", "d": "1", "a": "zero"})
        await q.client.xadd(stream, {"n": b"\xff\xfe", "d": "1"})
        await q.add("ok", 2)
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: _dead_count(q, 4))
            await wait_until(lambda: len(done) == 2)
            await q.add("ok", 3)
            await wait_until(lambda: len(done) == 3)
        assert sorted(done) == [1, 2, 3]
        dead = await q.dead()
        assert {d["reason"] for d in dead} == {"malformed"}
        assert (await q.counts())["pending"] == 0


async def test_strict_priority_under_a_backlog(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    order: list[str] = []

    async def handler(job: Job) -> None:
        order.append(job.level)

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("j", i) for i in range(60)])
        from streamflow import JobSpec
        await q.add_bulk([JobSpec("j", i, priority="low") for i in range(60)])
        await q.add_bulk([JobSpec("j", i, priority="high") for i in range(60)])
        worker = Worker(queue_name, handler, settings=settings, concurrency=1)
        async with running(worker):
            await wait_until(lambda: len(order) == 180)
        assert order == ["high"] * 60 + ["normal"] * 60 + ["low"] * 60


async def test_a_high_job_overtakes_a_low_backlog(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    order: list[str] = []

    async def handler(job: Job) -> None:
        order.append(job.data)
        await anyio.sleep(0.005)

    from streamflow import JobSpec
    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([JobSpec("j", f"low-{i}", priority="low") for i in range(300)])
        concurrency = 4
        worker = Worker(queue_name, handler, settings=settings, concurrency=concurrency)
        async with running(worker):
            await wait_until(lambda: len(order) >= 20)
            await q.add("j", "urgent", priority="high")
            started_before = len(order)
            await wait_until(lambda: "urgent" in order)
            position = order.index("urgent")
        # only jobs already fetched when it arrived (at most one batch: the concurrency) start
        # before it
        assert position <= started_before + concurrency
        assert len(order) < 300


async def test_concurrency_is_a_hard_limit(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    running_now = 0
    peak = 0

    async def handler(job: Job) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await anyio.sleep(0.01)
        running_now -= 1

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("j", i) for i in range(200)])
        worker = Worker(queue_name, handler, settings=settings, concurrency=7)
        async with running(worker):
            await wait_until(lambda: worker.processed == 200)
    assert peak == 7


async def test_per_job_timeout_retries_then_dead_letters(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    attempts: list[int] = []

    async def handler(job: Job) -> None:
        attempts.append(job.attempt)
        await anyio.sleep(5)

    async with Queue(queue_name, settings=settings) as q:
        await q.add("slow", {}, timeout=0.1, attempts=2)
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: _dead_count(q, 1))
        assert attempts == [1, 2]
        dead = (await q.dead())[0]
        assert dead["reason"] == "failed" and dead["error"].startswith("timeout")
