"""Per-job control (remove, promote, reschedule, retry, update_data, cancel, clean) on real
Redis, including the races a user hits: each action against the worker or promoter moving the
same job at the same moment. Nothing may run twice, nothing may be lost, a refusal says why."""

from __future__ import annotations

import random
from collections import Counter

import anyio
import orjson
import pytest

from streamflow import Discard, Job, Queue, Worker, scripts
from streamflow.errors import JobNotFound, JobStateError
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_remove_waiting_delayed_dead_and_refuse_the_rest(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        waiting = await q.add("w", {"n": 1})
        delayed = await q.add("d", {"n": 2}, delay=600)
        assert waiting and delayed
        await q.remove(waiting)
        await q.remove(delayed, actor="alice")
        counts = await q.counts()
        assert counts["waiting"] == 0 and counts["delayed"] == 0
        with pytest.raises(JobNotFound):
            await q.remove(waiting)
        active = await q.add("a", {"n": 3}, job_id="evt_active")
        await q.client.xreadgroup(q.settings.worker.group, "c1",
                                  {q.keys.level("normal"): ">"}, count=10)
        with pytest.raises(JobStateError, match=r"evt_active is active.*cancel it instead"):
            await q.remove("evt_active")
        assert active == "evt_active"
        audit = await q.audit(delayed)
        assert [(a.action, a.from_state, a.actor) for a in audit] == [
            ("remove", "delayed", "alice")]


async def test_promote_reschedule_update_data(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        job = await q.add("later", {"v": 1}, delay=600, job_id="evt_later")
        assert job == "evt_later"
        await q.reschedule(job, 1200)
        view = await q.job(job)
        assert view is not None and view.due_ms is not None
        await q.update_data(job, {"v": 2})
        view = await q.job(job)
        assert view is not None and view.data == {"v": 2} and view.state == "delayed"
        await q.promote(job)
        with pytest.raises(JobStateError, match="is waiting: promote applies to delayed"):
            await q.promote(job)
        with pytest.raises(JobStateError, match="reschedule applies to delayed"):
            await q.reschedule(job, 5)
        await q.update_data(job, {"v": 3})
        view = await q.job(job)
        assert view is not None and view.state == "waiting" and view.data == {"v": 3}
        plain = await q.add("plain", {"v": 1})
        assert plain is not None
        await q.update_data(plain, {"v": 9})
        view = await q.job(plain)
        assert view is not None and view.id == plain and view.data == {"v": 9}
        assert (await q.counts())["waiting"] == 2


async def test_retry_one_dead_job_with_and_without_edited_data(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, attempts=1)
    runs: list[tuple[str, object]] = []

    async def handler(job: Job) -> None:
        runs.append((job.id, job.data))
        if job.data.get("fail"):
            raise Discard("bad payload")

    async with Queue(queue_name, settings=settings) as q:
        first = await q.add("pay", {"fail": True, "n": 1})
        second = await q.add("pay", {"fail": True, "n": 2}, job_id="evt_2")
        assert first and second
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed + worker.failed == 2)
            await wait_until(lambda: _dead_count(q, 2))
            await q.remove(first)
            assert await q.retry(second, data={"n": 2}, actor="bob") == "evt_2"
            await wait_until(lambda: ("evt_2", {"n": 2}) in runs)
            await wait_until(lambda: _state(q, "evt_2", "completed"))
            with pytest.raises(JobStateError, match="is completed: retry applies to dead"):
                await q.retry(second)
        assert await q.job(first) is None
        # the dead letter of the original payload stays on record beside the audit entry
        assert [j.data for j in (await q.jobs("dead")).jobs] == [{"fail": True, "n": 2}]
        [audit] = await q.audit("evt_2")
        assert (audit.action, audit.actor, audit.detail["d"]) == ("retry_edit", "bob", '{"n":2}')


async def _state(q: Queue, job_id: str, state: str) -> bool:
    view = await q.job(job_id)
    return view is not None and view.state == state


async def _dead_count(q: Queue, n: int) -> bool:
    return (await q.counts())["dead"] >= n


async def test_clean_by_state_and_age(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        for i in range(30):
            await q.client.xadd(q.keys.dead, {"n": "x", "d": "{}", "i": f"old-{i}"},
                                id=f"{1000 + i}-0")
        await q.client.xadd(q.keys.dead, {"n": "x", "d": "{}", "i": "new"})
        for i in range(5):
            await q.add("later", {"n": i}, delay=600)
        assert await q.clean("dead", older_than=3600, limit=10) == 10
        assert await q.clean("dead", older_than=3600) == 20
        assert [j.id for j in (await q.jobs("dead")).jobs] == ["new"]
        assert await q.clean("delayed", older_than=3600) == 0
        assert await q.clean("delayed") == 5
        with pytest.raises(ValueError, match="clean applies to"):
            await q.clean("waiting")


async def test_clean_takes_jobs_of_the_cut_off_millisecond(redis_url: str,
                                                           queue_name: str) -> None:
    # clean(older_than=0) right after an add ran in the add's own millisecond and kept the job
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        job_id = await q.add("later", {}, delay=600)
        assert job_id is not None
        record = orjson.loads(await q.client.hget(q.keys.jobs, job_id))
        enqueued = int(record[record.index("t") + 1])
        entry = await q.client.xadd(q.keys.dead, {"n": "x", "d": "{}", "i": "d"})
        dead_ms = int(entry.decode().partition("-")[0])
        for target, kind, cutoff in ((q.keys.delayed, "delayed", enqueued),
                                     (q.keys.dead, "stream", dead_ms)):
            removed, _ = await scripts.call(q.client, scripts.SCRIPTS["clean_jobs"],
                                            [target, q.keys.jobs], [kind, cutoff, 10, ""])
            assert removed == 1, kind


async def test_two_cleans_at_once_count_each_job_once(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        pipe = q.client.pipeline(transaction=False)
        for i in range(5000):
            pipe.xadd(q.keys.dead, {"n": "x", "d": "{}", "i": f"d{i}"}, id=f"{1000 + i}-0")
        await pipe.execute()
        results: list[int] = []

        async def clean() -> None:
            results.append(await q.clean("dead"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(clean)
            tg.start_soon(clean)
        assert sum(results) == 5000
        assert await q.client.xlen(q.keys.dead) == 0


async def test_remove_races_a_worker_fetching_the_same_jobs(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    ran: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        ran[job.id] += 1

    async with Queue(queue_name, settings=settings) as q:
        ids = [i for i in await q.add_bulk([("pay", {"n": n}) for n in range(300)]) if i]
        removed: set[str] = set()
        refused: set[str] = set()

        async def remove_all() -> None:
            for job_id in ids:
                try:
                    await q.remove(job_id)
                    removed.add(job_id)
                except (JobStateError, JobNotFound):
                    refused.add(job_id)

        worker = Worker(queue_name, handler, settings=settings, concurrency=4)
        async with running(worker), anyio.create_task_group() as tg:
            tg.start_soon(remove_all)
        assert removed and not removed & set(ran)
        assert all(count == 1 for count in ran.values())
        assert removed | set(ran) == set(ids)


async def test_promote_races_the_promoter(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    ran: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        ran[job.id] += 1

    async with Queue(queue_name, settings=settings) as q:
        ids = [f"evt_{i}" for i in range(200)]
        for job_id in ids:
            await q.add("pay", {}, job_id=job_id, delay=random.uniform(0.05, 0.5))
        promoted = 0
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            for job_id in ids:
                try:
                    await q.promote(job_id)
                    promoted += 1
                except JobStateError:
                    pass
            await wait_until(lambda: len(ran) == len(ids))
            await anyio.sleep(0.3)  # any duplicate would have been fetched by now
        assert promoted > 0
        assert sorted(ran) == sorted(ids) and set(ran.values()) == {1}


async def test_update_data_races_the_fetch(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    seen: dict[str, list[object]] = {}

    async def handler(job: Job) -> None:
        seen.setdefault(job.id, []).append(job.data)

    async with Queue(queue_name, settings=settings) as q:
        ids = [i for i in await q.add_bulk([("pay", {"v": 0}) for _ in range(300)]) if i]
        updated: set[str] = set()

        async def update_all() -> None:
            for job_id in ids:
                try:
                    await q.update_data(job_id, {"v": 1})
                    updated.add(job_id)
                except (JobStateError, JobNotFound):  # running, or ran (result not kept)
                    pass

        worker = Worker(queue_name, handler, settings=settings, concurrency=4)
        async with running(worker):
            async with anyio.create_task_group() as tg:
                tg.start_soon(update_all)
            await wait_until(lambda: len(seen) == len(ids))
        assert updated
        assert all(len(runs) == 1 for runs in seen.values())
        for job_id in ids:
            assert seen[job_id] == [{"v": 1 if job_id in updated else 0}]


async def test_cancel_a_job_that_is_not_running_removes_it(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        job = await q.add("pay", {})
        assert job is not None
        assert await q.cancel(job) == "removed"
        assert await q.job(job) is None
        running_job = await q.add("pay", {}, job_id="evt_run")
        await q.client.xreadgroup(q.settings.worker.group, "c1",
                                  {q.keys.level("normal"): ">"}, count=10)
        assert running_job and await q.cancel(running_job) == "cancelled"
        [(_, request)] = await q.client.xrange(q.keys.control)
        assert request[b"c"] == b"cancel" and request[b"i"] == b"evt_run"
