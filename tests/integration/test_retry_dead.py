"""Retries with backoff, handler signals, dead letters and their recovery."""

from __future__ import annotations

import pytest

from streamflow import Backoff, Discard, Job, Queue, Retry, Worker
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def _dead(q: Queue, n: int) -> bool:
    return (await q.counts())["dead"] >= n


async def test_failures_retry_with_backoff_then_go_dead_with_the_error(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    attempts: list[tuple[str, int]] = []

    async def charge_card(job: Job) -> None:
        attempts.append((job.id, job.attempt))
        raise ConnectionError(f"provider down #{job.attempt}")

    async with Queue(queue_name, settings=settings) as q:
        job_id = await q.add("charge", {"amount": 100}, attempts=3,
                             backoff=Backoff.exponential(0.05))
        async with running(Worker(queue_name, charge_card, settings=settings)):
            await wait_until(lambda: _dead(q, 1))
        assert attempts == [(job_id, 1), (job_id, 2), (job_id, 3)]
        [dead] = await q.dead()
        assert dead["job_id"] == job_id and dead["name"] == "charge"
        assert dead["reason"] == "failed"
        assert dead["error"] == "ConnectionError: provider down #3"
        assert "charge_card" in dead["traceback"] and "ConnectionError" in dead["traceback"]
        assert dead["data"] == '{"amount":100}'
        counts = await q.counts()
        assert counts["pending"] == 0 and counts["delayed"] == 0
        events = [f[b"e"] for _, f in await q.client.xrange(q.keys.events)]
        assert events.count(b"retrying") == 2 and events.count(b"dead") == 1


async def test_flaky_job_succeeds_on_a_later_attempt_keeping_its_id(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    seen: list[tuple[str, int, object]] = []

    async def flaky(job: Job) -> str:
        seen.append((job.id, job.attempt, job.data))
        if job.attempt < 3:
            raise TimeoutError("try again")
        return "ok"

    async with Queue(queue_name, settings=settings) as q:
        job_id = await q.add("flaky", {"k": [1, 2]}, job_id="evt_flaky")
        worker = Worker(queue_name, flaky, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed == 1)
        assert seen == [("evt_flaky", 1, {"k": [1, 2]}), ("evt_flaky", 2, {"k": [1, 2]}),
                        ("evt_flaky", 3, {"k": [1, 2]})]
        assert job_id == "evt_flaky" and (await q.counts())["dead"] == 0


async def test_discard_goes_straight_to_dead_letters(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    calls = 0

    async def refund(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise Discard("amount exceeds capture")

    async with Queue(queue_name, settings=settings) as q:
        await q.add("refund", {}, attempts=5)
        async with running(Worker(queue_name, refund, settings=settings)):
            await wait_until(lambda: _dead(q, 1))
        assert calls == 1
        [dead] = await q.dead()
        assert dead["reason"] == "discarded" and dead["error"] == "amount exceeds capture"


async def test_retry_signal_sets_the_delay(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    settings.queue.backoff_delay = 3600  # the default backoff would wait an hour
    attempts: list[int] = []

    async def handler(job: Job) -> None:
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise Retry(delay=0.05)

    async with Queue(queue_name, settings=settings) as q:
        await q.add("x", {})
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed == 1)
        assert attempts == [1, 2]


async def test_retry_dead_puts_jobs_back_with_fresh_attempts(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    healthy = False
    runs: list[tuple[str, int]] = []

    async def handler(job: Job) -> None:
        runs.append((job.id, job.attempt))
        if not healthy:
            raise RuntimeError("downstream broken")

    async with Queue(queue_name, settings=settings) as q:
        ids = await q.add_bulk([("x", i) for i in range(3)])
        await q.add("y", {}, priority="high", job_id="evt_y", attempts=1)
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: _dead(q, 4))
            healthy = True
            assert await q.retry_dead() == 4
            await wait_until(lambda: worker.processed == 4)
        assert (await q.counts())["dead"] == 0
        final = {job_id: attempt for job_id, attempt in runs[-4:]}
        assert final == {**{i: 1 for i in ids if i}, "evt_y": 1}
        high = await q.client.xrange(q.keys.level("high"))
        assert len(high) == 2  # back on its own level


async def test_purge_dead(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)

    async def handler(job: Job) -> None:
        raise Discard("no")

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("x", i) for i in range(3)])
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: _dead(q, 3))
        first = (await q.dead())[0]["entry_id"]
        assert await q.purge_dead([first]) == 1
        assert await q.purge_dead() == 2
        assert (await q.counts())["dead"] == 0
