"""Queue.get_job through every state, and result retention by count and age."""

from __future__ import annotations

import anyio
import pytest

from streamflow import Discard, Job, JobSpec, Queue, Worker
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def _state(q: Queue, job_id: str, state: str) -> bool:
    info = await q.get_job(job_id)
    return info is not None and info["state"] == state


async def test_get_job_through_every_state(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    gate = anyio.Event()

    async def handler(job: Job) -> dict[str, int]:
        if job.data == "fail":
            if job.attempt == 1:
                raise RuntimeError("first try fails")
            raise Discard("gave up")
        await gate.wait()
        return {"ledger_rows": 2}

    async with Queue(queue_name, settings=settings) as q:
        assert await q.get_job("nope") is None
        await q.add("pay", "ok", job_id="evt_ok")
        await q.add("pay", "later", job_id="evt_later", delay=30)
        await q.add("pay", "fail", job_id="evt_fail", attempts=3)
        tracked = await q.add("pay", "tracked", track=True)
        untracked = await q.add("pay", "untracked")
        assert tracked is not None and untracked is not None
        assert (await q.get_job("evt_ok"))["state"] == "waiting"  # type: ignore[index]
        assert (await q.get_job("evt_later"))["state"] == "delayed"  # type: ignore[index]
        assert await q.get_job(untracked) is None
        worker = Worker(queue_name, handler, settings=settings, concurrency=4)
        async with running(worker):
            await wait_until(lambda: _state(q, "evt_ok", "active"))
            info = await q.get_job("evt_ok")
            assert info is not None and info["started_ms"] is not None
            await wait_until(lambda: _state(q, "evt_fail", "dead"))
            gate.set()
            await wait_until(lambda: _state(q, "evt_ok", "completed"))
            await wait_until(lambda: _state(q, tracked, "completed"))
        done = await q.get_job("evt_ok")
        assert done is not None and done["result"] == {"ledger_rows": 2}
        assert done["added_ms"] <= done["started_ms"] <= done["finished_ms"]  # type: ignore[operator]
        dead = await q.get_job("evt_fail")
        assert dead is not None and dead["attempt"] == 2 and dead["reason"] == "discarded"
        assert dead["error"] == "gave up"
        ttl = await q.client.pttl(q.keys.status("evt_ok"))
        assert 0 < ttl <= 86_400_000


async def test_a_retrying_job_reads_as_retrying_then_waiting(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)

    async def handler(job: Job) -> None:
        raise RuntimeError("down")

    async with Queue(queue_name, settings=settings) as q:
        await q.add("pay", {}, job_id="evt_r", attempts=5, backoff=None)
        settings.queue.backoff_delay = 60
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: _state(q, "evt_r", "retrying"))
        info = await q.get_job("evt_r")
        assert info is not None and info["error"] == "RuntimeError: down"
        # once due, the promoter moves it back: it reads as waiting
        await q.client.zadd(q.keys.delayed, {"evt_r": 0})
        from streamflow.scheduler import promote_due
        await promote_due(q.client, q.keys)
        assert (await q.get_job("evt_r"))["state"] == "waiting"  # type: ignore[index]


async def test_results_kept_by_count(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, remove_on_complete=25)

    async def handler(job: Job) -> int:
        return int(job.data)

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("n", i) for i in range(100)])
        await q.add_bulk([JobSpec("quiet", 0, keep_result=False) for _ in range(10)])
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed == 110)
            await wait_until(lambda: _no_pending(q))
        done = await q.client.xrange(q.keys.done)
        assert len(done) == 25
        assert all(f[b"n"] == b"n" for _, f in done)


async def _no_pending(q: Queue) -> bool:
    return (await q.counts())["pending"] == 0


async def test_results_and_dead_letters_kept_by_age(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, remove_on_complete_age=0.5, remove_on_fail=3)

    async def handler(job: Job) -> int:
        if job.data < 0:
            raise Discard("negative")
        return int(job.data)

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("n", i) for i in range(5)])
        await q.add_bulk([("n", -i - 1) for i in range(5)])
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed + worker.failed == 10)
            await wait_until(lambda: _no_pending(q))
            await anyio.sleep(0.7)
            await q.add("n", 100)
            await wait_until(lambda: worker.processed == 6)
            await wait_until(lambda: _no_pending(q))
        done = await q.client.xrange(q.keys.done)
        assert [f[b"r"] for _, f in done] == [b"100"]  # the old five aged out
        assert (await q.counts())["dead"] == 3  # exactly the configured count
