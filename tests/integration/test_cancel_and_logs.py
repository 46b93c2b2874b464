"""Cancel requests through the control stream, and job logs, on real Redis."""

from __future__ import annotations

import random
import threading
from collections import Counter

import anyio
import pytest

from streamflow import Job, Queue, Worker
from streamflow.cancel import CancelWatcher
from streamflow.errors import JobCancelled, JobNotFound, JobStateError
from streamflow.joblog import append_log, log_writer
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_a_cancel_request_cancels_the_scope_of_the_run_it_names(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        await q.client.xadd(q.keys.control, {"c": "cancel", "i": "old", "l": "1", "e": "1-0"})
        watcher = CancelWatcher(q.client, q.keys, interval=0.01)
        await watcher.start_position()  # requests made before the worker started are not ours
        running_job = await q.add("slow", {})
        reply = await q.client.xreadgroup(q.settings.worker.group, "c1",
                                          {q.keys.level("normal"): ">"}, count=1)
        entry = reply[0][1][0][0].decode()
        outcome: list[str] = []
        ended = anyio.Event()

        async def handler() -> None:
            try:
                with watcher.running(1, entry):
                    await anyio.sleep(30)
            except JobCancelled:
                outcome.append("cancelled")
            ended.set()

        async with anyio.create_task_group() as tg:
            await tg.start(watcher.watch)
            tg.start_soon(handler)
            assert running_job and await q.cancel(running_job) == "cancelled"
            with anyio.fail_after(10):
                await ended.wait()
            tg.cancel_scope.cancel()
        assert outcome == ["cancelled"]


async def test_a_request_read_before_the_run_starts_cancels_it_at_once(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        watcher = CancelWatcher(q.client, q.keys)
        await watcher.start_position()
        await q.client.xadd(q.keys.control, {"c": "cancel", "i": "j", "l": "0", "e": "5-0"})
        assert await watcher.poll() == 0
        with pytest.raises(JobCancelled), watcher.running(0, "5-0"):
            await anyio.sleep(5)


async def test_job_logs_are_capped_and_expire(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        write = log_writer(q.client, q.keys, ttl_ms=60_000, lines=3)
        for n in range(5):
            await write("evt_1", f"line {n}")
        lines = await q.job_logs("evt_1")
        assert [line.split(" ", 1)[1] for line in lines] == ["line 2", "line 3", "line 4"]
        assert 0 < await q.client.pttl(q.keys.job_log("evt_1")) <= 60_000
        await append_log(q.client, q.keys, "evt_2", "x" * 5000, ttl_ms=1000)
        [only] = await q.job_logs("evt_2", limit=10)
        assert len(only) < 2100


async def test_cancel_stops_a_running_handler_and_dead_letters_it(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, attempts=5)
    started = anyio.Event()

    async def slow(job: Job) -> None:
        await job.log("calling the provider")
        started.set()
        await anyio.sleep(60)

    async with Queue(queue_name, settings=settings) as q:
        job_id = await q.add("capture", {"id": "pay_1"}, job_id="evt_cancel")
        worker = Worker(queue_name, slow, settings=settings)
        async with running(worker):
            with anyio.fail_after(15):
                await started.wait()
            assert await q.cancel("evt_cancel") == "cancelled"
            await wait_until(lambda: _state(q, "evt_cancel", "dead"))
        view = await q.job("evt_cancel")
        assert view is not None and view.reason == "cancelled" and view.attempt == 1
        assert "cancelled by an operator" in (view.error or "")
        assert job_id == "evt_cancel"
        [line] = await q.job_logs("evt_cancel")
        assert line.endswith(" calling the provider")
        counts = await q.counts()
        assert counts["pending"] == 0 and counts["delayed"] == 0  # no retry of a cancel


async def _state(q: Queue, job_id: str, state: str) -> bool:
    view = await q.job(job_id)
    return view is not None and view.state == state


async def test_cancel_races_the_job_finishing(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    runs: Counter[str] = Counter()

    async def quick(job: Job) -> str:
        runs[job.id] += 1
        await anyio.sleep(random.uniform(0, 0.6))
        return "done"

    async with Queue(queue_name, settings=settings) as q:
        ids = [f"evt_{i}" for i in range(40)]
        for job_id in ids:
            await q.add("capture", {}, job_id=job_id)
        outcomes: dict[str, str] = {}
        worker = Worker(queue_name, quick, settings=settings, concurrency=40)
        async with running(worker):
            await wait_until(lambda: len(runs) >= 20)
            for job_id in ids:
                try:
                    outcomes[job_id] = await q.cancel(job_id)
                except JobStateError as exc:
                    outcomes[job_id] = f"refused: {exc}"
                except JobNotFound:
                    outcomes[job_id] = "gone"
            await wait_until(lambda: _all_final(q, ids))
        final = {job_id: await q.job(job_id) for job_id in ids}
        for job_id, outcome in outcomes.items():
            view = final[job_id]
            assert runs[job_id] <= 1, job_id  # nothing runs twice
            if outcome == "removed":
                assert runs[job_id] == 0 and view is None
            elif outcome == "cancelled":  # the worker stopped it, or it finished first
                assert view is not None and (view.state, view.reason) in (
                    ("dead", "cancelled"), ("completed", None))
            else:
                assert view is not None and view.state == "completed", (job_id, outcome)


async def _all_final(q: Queue, ids: list[str]) -> bool:
    for job_id in ids:
        view = await q.job(job_id)
        if view is not None and view.state not in ("completed", "dead"):
            return False
    return True


async def test_cancel_of_a_sync_handler_dead_letters_the_job_at_once(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    started = threading.Event()
    release = threading.Event()

    def blocking(job: Job) -> None:
        started.set()
        release.wait(30)  # a thread cannot be interrupted: it runs to its end

    async with Queue(queue_name, settings=settings) as q:
        await q.add("capture", {}, job_id="evt_sync")
        worker = Worker(queue_name, blocking, settings=settings)
        try:
            async with running(worker):
                await wait_until(started.is_set)
                assert await q.cancel("evt_sync") == "cancelled"
                await wait_until(lambda: _state(q, "evt_sync", "dead"))
                release.set()
        finally:
            release.set()
        view = await q.job("evt_sync")
        assert view is not None and view.reason == "cancelled"
