"""Failures are not hidden: every ack result is checked and logged with its job; timeouts of
the worker and of the handler are told apart; a rate limit is not a failure."""

from __future__ import annotations

import logging

import pytest

from streamflow import Job, Queue, RateLimited, Worker
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def _dead(q: Queue) -> int:
    return int((await q.counts())["dead"])


async def test_a_handlers_own_timeout_error_is_not_called_a_job_timeout(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)

    async def handler(job: Job) -> None:
        raise TimeoutError("the provider did not answer")

    async with Queue(queue_name, settings=settings) as q:
        await q.add("call", {}, timeout=30, attempts=1)
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: _dead(q))
        [dead] = await q.dead()
        assert dead["error"] == "TimeoutError: the provider did not answer"
        assert worker.failed == 1


async def test_a_rate_limited_run_is_not_counted_as_failed(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    runs: list[int] = []

    async def handler(job: Job) -> None:
        runs.append(job.attempt)
        if len(runs) == 1:
            raise RateLimited(0.05, queue=False)

    async with Queue(queue_name, settings=settings) as q:
        await q.add("call", {})
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed == 1)
        assert runs == [1, 1]
        assert worker.failed == 0


async def test_an_ack_refused_by_redis_is_logged_with_the_job_id(
        redis_url: str, queue_name: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = fast_settings(redis_url)
    seen: list[str] = []

    async def handler(job: Job) -> None:
        seen.append(job.id)
        raise ValueError("try again")

    async with Queue(queue_name, settings=settings) as q:
        job_id = await q.add("call", {}, job_id="evt-refused", attempts=3)
        await q.client.set(q.keys.delayed, "not a zset")  # retry_later's ZADD is refused
        worker = Worker(queue_name, handler, settings=settings)
        with caplog.at_level(logging.ERROR, logger="streamflow.worker"):
            async with running(worker):
                await wait_until(lambda: any("given up" in r.getMessage()
                                             for r in caplog.records))
        messages = [r.getMessage() for r in caplog.records]
        assert any(f"retry_later for job {job_id} refused by Redis" in m and "WRONGTYPE" in m
                   for m in messages)
        assert seen == [job_id]
        # not acknowledged without its next attempt: left pending for the reclaimer
        pending = await q.client.xpending(q.keys.level("normal"), "workers")
        assert pending["pending"] == 1
        await q.client.delete(q.keys.delayed)


async def test_an_entry_taken_over_before_its_ack_is_reported(
        redis_url: str, queue_name: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = fast_settings(redis_url)

    async with Queue(queue_name, settings=settings) as q:
        async def handler(job: Job) -> None:
            # another worker took the entry over and finished it while this run went on
            await q.client.xack(q.keys.level(job.level), "workers", job.entry_id)
            raise ValueError("failed after losing the entry")

        job_id = await q.add("call", {}, job_id="evt-taken", attempts=3)
        worker = Worker(queue_name, handler, settings=settings)
        with caplog.at_level(logging.WARNING, logger="streamflow.worker"):
            async with running(worker):
                await wait_until(lambda: any("no longer pending" in r.getMessage()
                                             for r in caplog.records))
        assert any(f"retry_later for job {job_id} not recorded" in r.getMessage()
                   for r in caplog.records)
        assert (await q.counts())["delayed"] == 0  # nothing scheduled twice
