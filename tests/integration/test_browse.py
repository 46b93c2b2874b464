"""Job views by state (paged) and by id, on real Redis."""

from __future__ import annotations

import pytest

from streamflow import Discard, Job, Queue, Worker
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def _deliver(q: Queue, count: int, level: str = "normal") -> list[bytes]:
    """Fetch entries the way a worker does (a consumer that never acks): they become active."""
    await q.ensure_group()
    reply = await q.client.xreadgroup(q.settings.worker.group, "stuck-consumer",
                                      {q.keys.level(level): ">"}, count=count)
    return [entry for entry, _ in reply[0][1]] if reply else []


async def test_waiting_pages_follow_cursors_newest_first_and_skip_delivered(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        ids = await q.add_bulk([("charge", {"n": i}) for i in range(7)])
        await q.add("urgent", {"n": 99}, priority="high")
        await _deliver(q, 2)  # the two oldest normal jobs are now active
        first = await q.jobs("waiting", limit=3)
        assert [j.name for j in first.jobs] == ["urgent", "charge", "charge"]
        assert [j.data for j in first.jobs[1:]] == [{"n": 6}, {"n": 5}]
        assert all(j.state == "waiting" for j in first.jobs)
        assert first.next_cursor is not None
        second = await q.jobs("waiting", limit=3, cursor=first.next_cursor)
        assert [j.data["n"] for j in second.jobs] == [4, 3, 2]
        third = await q.jobs("waiting", limit=3, cursor=second.next_cursor)
        assert third.jobs == [] and third.next_cursor is None
        oldest = await q.jobs("waiting", level="normal", newest_first=False, limit=10)
        assert [j.id for j in oldest.jobs] == ids[2:]
        assert oldest.next_cursor is None
        active = await q.jobs("active")
        assert [j.id for j in active.jobs] == ids[:2]
        assert active.jobs[0].consumer == "stuck-consumer" and active.jobs[0].deliveries == 1
        assert active.jobs[0].data == {"n": 0}


async def test_delayed_pages_by_due_time_with_ties(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        for i in range(5):
            await q.add("later", {"n": i}, delay=3600, job_id=f"tie-{i}")
        await q.add("sooner", {"n": 9}, delay=60, job_id="soon")
        seen: list[str] = []
        cursor = None
        while True:
            page = await q.jobs("delayed", limit=2, cursor=cursor, newest_first=False)
            seen += [j.id for j in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ["soon", "tie-0", "tie-1", "tie-2", "tie-3", "tie-4"]
        newest = await q.jobs("delayed", limit=10)
        assert [j.id for j in newest.jobs] == ["tie-4", "tie-3", "tie-2", "tie-1", "tie-0",
                                              "soon"]
        view = newest.jobs[-1]
        assert view.state == "delayed" and view.due_ms and view.data == {"n": 9}


async def test_finished_jobs_and_any_job_by_id(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, attempts=1)

    async def handler(job: Job) -> object:
        if job.name == "bad":
            raise Discard("card declined")
        return {"ok": job.data["n"]}

    async with Queue(queue_name, settings=settings) as q:
        good = await q.add("good", {"n": 1})
        bad = await q.add("bad", {"n": 2}, job_id="pay_bad")
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed + worker.failed >= 2)
            await wait_until(lambda: _dead(q))
        completed = await q.jobs("completed")
        assert [(j.id, j.result) for j in completed.jobs] == [(good, {"ok": 1})]
        dead = await q.jobs("dead")
        assert [(j.id, j.reason, j.error) for j in dead.jobs] == [
            (bad, "discarded", "card declined")]
        assert dead.jobs[0].data == {"n": 2}
        assert good is not None
        by_id = await q.job(good)
        assert by_id is not None and by_id.state == "completed" and by_id.result == {"ok": 1}
        dead_view = await q.job("pay_bad")
        assert dead_view is not None and dead_view.state == "dead"
        assert dead_view.finished_ms is not None
        assert await q.job("nope") is None


async def _dead(q: Queue) -> bool:
    return (await q.counts())["dead"] >= 1


async def test_job_by_id_in_each_state_and_large_data_capped(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
        implicit = await q.add("plain", {"blob": "x" * 20_000})
        assert implicit is not None
        view = await q.job(implicit)
        assert view is not None and view.state == "waiting" and view.data_truncated
        assert view.data_size > 20_000 and isinstance(view.data, str)
        later = await q.add("later", {"n": 1}, delay=600)
        assert later is not None
        delayed = await q.job(later)
        assert delayed is not None and delayed.state == "delayed"
        await q.promote(later)
        promoted = await q.job(later)
        assert promoted is not None and promoted.state == "waiting"
        await _deliver(q, 10)
        active = await q.job(later)
        assert active is not None and active.state == "active"
        assert active.consumer == "stuck-consumer"
