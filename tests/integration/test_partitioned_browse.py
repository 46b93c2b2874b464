"""Browsing and steering a partitioned queue on a real Redis: merged pages whose cursor walks
every partition, one partition's page, a job found by id (routed partition first, then all),
and the per-job actions run on the partition that holds the job."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from streamflow import Discard, Job, JobSpec, Queue, Worker
from streamflow.browse import JobView
from streamflow.discovery import known_queues
from streamflow.errors import JobNotFound, JobStateError
from streamflow.partitions import partition_for
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio
PARTS = 4


async def _walk(q: Queue, state: str, limit: int, **kwargs: Any) -> list[JobView]:
    """Every job of ``state``, page by page; fails on a page bigger than ``limit``."""
    seen: list[JobView] = []
    cursor = None
    for _ in range(1000):
        page = await q.jobs(state, limit=limit, cursor=cursor, **kwargs)
        assert len(page.jobs) <= limit
        seen += page.jobs
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


def _entry(view: JobView) -> tuple[int, int]:
    ms, _, seq = str(view.entry_id).partition("-")
    return int(ms), int(seq)


async def _deliver(q: Queue, partition: int, count: int) -> None:
    """A consumer that takes entries of one partition and never acks: they are active."""
    part = q.partition(partition)
    await q.ensure_group()
    await q.client.xreadgroup(q.settings.worker.group, "stuck", {part.keys.level("normal"): ">"},
                              count=count)


async def test_waiting_pages_merge_all_partitions_and_the_cursor_misses_nothing(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS) as q:
        ids = await q.add_bulk([JobSpec("charge", {"n": i}, job_id=f"evt_{i}")
                                for i in range(37)])
        urgent = await q.add_bulk([JobSpec("urgent", {"n": i}, job_id=f"hi_{i}",
                                           priority="high") for i in range(5)])
        assert {partition_for(job_id, PARTS) for job_id in ids} == set(range(PARTS))
        for limit in (1, 4, 10, 100):
            seen = await _walk(q, "waiting", limit)
            assert [v.id for v in seen[:5]] == [v.id for v in sorted(
                seen[:5], key=_entry, reverse=True)]
            assert {v.id for v in seen[:5]} == set(urgent), "the high level comes first"
            assert sorted(v.id for v in seen[5:]) == sorted(ids)
            assert seen[5:] == sorted(seen[5:], key=_entry, reverse=True), "newest first"
            assert all(v.partition == partition_for(v.id, PARTS) for v in seen)
        oldest = await _walk(q, "waiting", 7, newest_first=False, level="normal")
        assert [v.id for v in oldest] == [v.id for v in sorted(oldest, key=_entry)]
        assert len(oldest) == 37
        named = await _walk(q, "waiting", 3, name="urgent")
        assert sorted(v.id for v in named) == sorted(urgent)
        await q.obliterate(force=True)


async def test_one_partition_is_listed_alone(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS) as q:
        ids = await q.add_bulk([JobSpec("charge", i, job_id=f"evt_{i}") for i in range(20)])
        for i in range(PARTS):
            page = await q.jobs("waiting", partition=i, limit=100)
            assert sorted(v.id for v in page.jobs) == sorted(
                job_id for job_id in ids if partition_for(job_id, PARTS) == i)
            assert {v.partition for v in page.jobs} <= {i}
            same = await q.partition(i).jobs("waiting", limit=100)
            assert same.jobs == page.jobs
        with pytest.raises(ValueError, match="partition 4 does not exist"):
            await q.jobs("waiting", partition=PARTS)
        await q.obliterate(force=True)


async def test_delayed_and_active_pages_span_partitions(redis_url: str,
                                                        queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS) as q:
        for i in range(12):
            await q.add("later", i, job_id=f"d_{i}", delay=1000 + 10 * i)
        seen = await _walk(q, "delayed", 5)
        assert [v.id for v in seen] == [f"d_{i}" for i in reversed(range(12))]
        soonest = await _walk(q, "delayed", 5, newest_first=False)
        assert [v.id for v in soonest] == [f"d_{i}" for i in range(12)]
        await q.add_bulk([JobSpec("run", i, job_id=f"a_{i}") for i in range(16)])
        for partition in range(PARTS):
            await _deliver(q, partition, 2)
        active = await _walk(q, "active", 3)
        assert len(active) == 8 and all(v.state == "active" for v in active)
        assert sorted(v.partition for v in active) == sorted([*range(PARTS)] * 2)
        assert all(v.consumer == "stuck" for v in active)
        await q.obliterate(force=True)


async def _finish_some(q: Queue, settings: Any) -> None:
    """Run a worker: jobs named ``bad`` are dead-lettered, the others complete with a result."""
    async def handler(job: Job) -> Any:
        if job.name == "bad":
            raise Discard("provider refused")
        return {"ok": job.data}

    await q.add_bulk([JobSpec("bad", i, job_id=f"bad_{i}", attempts=1) for i in range(9)]
                     + [JobSpec("good", i, job_id=f"good_{i}", keep_result=True)
                        for i in range(9)])
    async with running(Worker(q.name, handler, settings=settings, concurrency=8)):
        await wait_until(lambda: _settled(q))


async def _settled(q: Queue) -> bool:
    counts = await q.counts()
    return counts["dead"] == 9 and not counts["waiting"] and not counts["pending"]


async def test_dead_and_completed_pages_span_partitions(redis_url: str,
                                                        queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
        await _finish_some(q, settings)
        dead = await _walk(q, "dead", 2)
        assert sorted(v.id for v in dead) == sorted(f"bad_{i}" for i in range(9))
        assert dead == sorted(dead, key=_entry, reverse=True), "newest dead letter first"
        assert all(v.reason == "discarded" or v.error for v in dead)
        done = await _walk(q, "completed", 4)
        assert sorted(v.id for v in done) == sorted(f"good_{i}" for i in range(9))
        assert all(v.partition == partition_for(v.id, PARTS) for v in done + dead)
        await q.obliterate(force=True)


async def test_a_job_is_found_by_id_in_its_partition_or_by_key_elsewhere(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS) as q:
        await q.add("by_id", {"n": 1}, job_id="evt_Q1x9")
        key = next(k for k in (f"pay_{i}" for i in range(100))
                   if partition_for(k, PARTS) != partition_for("evt_keyed", PARTS))
        await q.add("keyed", {"n": 2}, job_id="evt_keyed", key=key)
        plain = await q.add("plain", {"n": 3})
        assert plain is not None
        view = await q.job("evt_Q1x9")
        assert view is not None and view.partition == partition_for("evt_Q1x9", PARTS)
        assert view.state == "waiting" and view.data == {"n": 1}
        keyed = await q.job("evt_keyed")  # not in its id's partition: found in the others
        assert keyed is not None and keyed.partition == partition_for(key, PARTS)
        assert await q.job("evt_keyed", key=key) == keyed
        assert await q.job("evt_keyed", partition=partition_for("evt_keyed", PARTS)) is None
        found = await q.job(plain)
        assert found is not None and found.name == "plain" and found.partition is not None
        assert await q.job(plain, partition=found.partition) == found
        assert await q.job("evt_nowhere") is None
        await q.obliterate(force=True)


async def test_actions_run_on_the_partition_that_holds_the_job(redis_url: str,
                                                               queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
        await _finish_some(q, settings)
        dead = await q.job("bad_3")
        assert dead is not None and dead.state == "dead"
        assert await q.retry("bad_3", actor="oncall") == "bad_3"
        again = await q.job("bad_3")
        assert again is not None and again.state == "waiting"
        assert again.partition == dead.partition
        assert await q.partition(dead.partition or 0).counts() != await q.counts()
        assert [r.action for r in await q.audit("bad_3")][:1] == ["retry"]
        await q.retry("bad_4", data={"fixed": True})
        assert (await q.job("bad_4")).data == {"fixed": True}  # type: ignore[union-attr]
        await q.remove("bad_5")
        assert "bad_5" not in {v.id for v in await _walk(q, "dead", 50)}

        await q.add("later", 1, job_id="evt_later", delay=3600)
        await q.reschedule("evt_later", 7200)
        await q.promote("evt_later")
        promoted = await q.job("evt_later")
        assert promoted is not None and promoted.state == "waiting"
        await q.update_data("evt_later", {"n": 2})
        assert (await q.job("evt_later")).data == {"n": 2}  # type: ignore[union-attr]
        assert await q.cancel("evt_later") == "removed"
        gone = await q.job("evt_later")  # only its status record is left
        assert gone is not None and gone.state == "unknown"
        with pytest.raises(JobNotFound, match="any of the 4 partitions"):
            await q.retry("evt_nowhere")
        with pytest.raises(JobStateError, match="retry applies to dead"):
            await q.retry("good_1")
        assert await q.clean("dead", limit=3) == 3
        assert (await q.counts())["dead"] == 9 - 2 - 3  # an edited retry keeps its dead letter
        await q.obliterate(force=True)


async def test_business_key_logs_and_bad_cursors(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS) as q:
        for i in range(8):
            await q.add("charge", i, job_id=f"evt_{i}", index={"payment_id": "pay_1"})
        views = await q.find("payment_id", "pay_1")
        assert sorted(v.id for v in views) == [f"evt_{i}" for i in range(8)]
        added = [await q.client.zscore(q.partition(v.partition or 0).keys.index(
            "payment_id", "pay_1"), v.id) for v in views]
        assert added == sorted(added, reverse=True), "newest first (the index's add times)"
        assert len({v.partition for v in views}) > 1
        part = q.partition(partition_for("evt_5", PARTS))
        await part.client.rpush(part.keys.job_log("evt_5"), "1700000000000 called provider")
        assert await q.job_logs("evt_5") == ["1700000000000 called provider"]
        with pytest.raises(ValueError, match="bad cursor"):
            await q.jobs("waiting", cursor="normal:1-0")
        page = await q.jobs("waiting", limit=1)
        async with Queue(queue_name + "x", settings=fast_settings(redis_url),
                         partitions=2) as other:
            await other.add("x", 1)
            with pytest.raises(ValueError, match="bad cursor"):
                await other.jobs("waiting", cursor=page.next_cursor)
            await other.obliterate(force=True)
        await q.obliterate(force=True)


async def test_a_partitioned_queue_is_discovered_once(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    settings.prefix = f"disc{queue_name[-8:]}"
    async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
        await q.add_bulk([("a", i) for i in range(8)])
        assert await known_queues(q.client, settings.prefix) == [queue_name]
        await q.obliterate(force=True)


async def test_a_running_job_of_a_partition_shows_its_log_and_is_cancelled(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    job_id = next(f"evt_run{i}" for i in range(100) if partition_for(f"evt_run{i}", PARTS))

    async def handler(job: Job) -> None:
        await job.log("called the provider")
        await anyio.sleep(60)

    async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
        await q.add("slow", {}, job_id=job_id)
        async with running(Worker(queue_name, handler, settings=settings, concurrency=2)):
            await wait_until(lambda: _logged(q, job_id))
            view = await q.job(job_id)
            assert view is not None and view.state == "active"
            assert view.partition == partition_for(job_id, PARTS)
            assert [v.id for v in (await q.jobs("active")).jobs] == [job_id]
            assert await q.cancel(job_id, actor="oncall") == "cancelled"
            await wait_until(lambda: _is_dead(q, job_id))
        dead = await q.job(job_id)
        assert dead is not None and dead.reason == "cancelled"
        await q.obliterate(force=True)


async def _logged(q: Queue, job_id: str) -> bool:
    return any("called the provider" in line for line in await q.job_logs(job_id))


async def _is_dead(q: Queue, job_id: str) -> bool:
    view = await q.job(job_id)
    return view is not None and view.state == "dead"


async def test_a_bad_level_or_state_is_a_plain_value_error(redis_url: str,
                                                           queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS) as q:
        await q.add("a", 1, job_id="evt_1")
        with pytest.raises(ValueError, match="unknown level 'urgent'"):
            await q.jobs("waiting", level="urgent")
        with pytest.raises(ValueError, match="unknown state 'lost'"):
            await q.jobs("lost")
        await q.obliterate(force=True)


async def test_a_held_job_is_found_and_removing_its_key_holder_lets_it_go(redis_url: str,
                                                          queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS,
                     ordered=True) as q:
        await q.add_bulk([JobSpec("pay", {"n": i}, job_id=f"evt_{i}", key="pay_Q1x9")
                          for i in range(3)])
        first, second = await q.job("evt_0"), await q.job("evt_1", key="pay_Q1x9")
        assert first is not None and first.state == "waiting"
        assert second is not None and second.state == "held" and second.data == {"n": 1}
        assert second.partition == partition_for("pay_Q1x9", PARTS)
        assert first.key == "pay_Q1x9"
        with pytest.raises(JobStateError, match="evt_1 is held"):
            await q.remove("evt_1")
        await q.remove("evt_0", actor="oncall")  # the key goes to the next job
        let_go = await q.job("evt_1")
        assert let_go is not None and let_go.state == "waiting"
        assert await q.cancel("evt_1") == "removed"
        last = await q.job("evt_2")
        assert last is not None and last.state == "waiting"
        await q.obliterate(force=True)


async def test_jobs_added_between_pages_neither_repeat_nor_hide_older_ones(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=fast_settings(redis_url), partitions=PARTS) as q:
        await q.add_bulk([JobSpec("old", i, job_id=f"old_{i}") for i in range(30)])
        seen: list[str] = []
        cursor = None
        for page_no in range(100):
            page = await q.jobs("waiting", limit=4, cursor=cursor)
            seen += [v.id for v in page.jobs]
            await q.add("new", page_no, job_id=f"new_{page_no}")  # newer than the cursor
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == sorted(f"old_{i}" for i in range(30))
        await q.obliterate(force=True)
