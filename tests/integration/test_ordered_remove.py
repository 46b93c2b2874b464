"""Removing or cancelling a waiting or delayed job of an ordered queue that holds its key lets
the next held job of that key go in the same move: a caller lost right after the removal
cannot leave the key locked by a job that no longer exists."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streamflow import Job, JobSpec, Queue, Worker, scripts
from streamflow.errors import JobStateError
from streamflow.partitions import partition_for
from streamflow.queue.ordered import release_command
from tests.faultproxy import FaultProxy
from tests.servers import RedisServer
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def _held_ids(q: Queue, key: str) -> list[str]:
    return [item.decode().split("|", 1)[1] for item in await q.client.lrange(q.keys.held(key),
                                                                             0, -1)]


async def _lock(q: Queue, key: str) -> str | None:
    holder = await q.client.hget(q.keys.keylocks, key)
    return holder.decode() if holder is not None else None


async def _passed_to_the_last(q: Queue, key: str, holder: str) -> None:
    """The key went to ``holder``, the last job of the key, in the move: none is held."""
    assert await _lock(q, key) == holder, "the key went to the next job in the move"
    assert await _held_ids(q, key) == []


async def _state(q: Queue, job_id: str, state: str) -> bool:
    view = await q.job(job_id)
    return view is not None and view.state == state


async def _run_all(queue_name: str, settings: Any, expected: int) -> list[Any]:
    seen: list[Any] = []

    async def handler(job: Job) -> None:
        seen.append(job.data)

    async with running(Worker(queue_name, handler, settings=settings, concurrency=4)):
        await wait_until(lambda: len(seen) >= expected)
    return seen


async def test_a_remove_whose_caller_is_lost_right_after_still_frees_the_key(
        redis_server: RedisServer, queue_name: str) -> None:
    """The remove's reply never arrives (the connection is reset right after Redis ran it):
    no second call can follow, yet the next job of the key runs."""
    direct = fast_settings(redis_server.url)
    with FaultProxy(redis_server.port) as proxy:
        lossy = fast_settings(proxy.url)
        lossy.redis.retry_attempts = 0
        async with Queue(queue_name, settings=lossy, ordered=True) as q:
            first = await q.add("pay", 1, key="pay_1", job_id="evt_1")
            second = await q.add("pay", 2, key="pay_1", job_id="evt_2")
            assert (first, second) == ("evt_1", "evt_2")
            await scripts.load_scripts(q.client)
            proxy.drop_reply_after(b"remove_job")
            with pytest.raises(RedisConnectionError):
                await q.remove("evt_1")
            assert proxy.dropped_replies == 1
    async with Queue(queue_name, settings=direct, ordered=True) as q:
        await _passed_to_the_last(q, "pay_1", "evt_2")
        assert await _run_all(queue_name, direct, 1) == [2]
        await q.obliterate(force=True)


async def test_cancel_of_a_waiting_keyed_job_lets_the_next_one_run(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, ordered=True) as q:
        await q.add_bulk([JobSpec("pay", i, key="pay_A", job_id=f"a{i}") for i in range(3)])
        assert await q.cancel("a0", actor="ops") == "removed"
        assert await _lock(q, "pay_A") == "a1"
        assert await _held_ids(q, "pay_A") == ["a2"]
        events = [fields for _, fields in await q.client.xrange(q.keys.events)]
        assert {b"e": b"removed", b"i": b"a0", b"from": b"waiting"} in events
        assert {b"e": b"waiting", b"i": b"a1"} in events
        assert [(a.action, a.from_state, a.actor) for a in await q.audit("a0")] == [
            ("cancel", "waiting", "ops")]
        # the release the removal made, sent again (as a worker or an old client would): no-op
        [again] = await scripts.pipeline(q.client, [release_command(
            q.keys, [(b"pay_A", "a0")], "1", 1000)])
        assert again == 0 and await _lock(q, "pay_A") == "a1"
        assert await _run_all(queue_name, settings, 2) == [1, 2]
        assert await _lock(q, "pay_A") is None
        await q.obliterate(force=True)


async def test_remove_of_a_delayed_keyed_job_lets_the_next_one_run(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, ordered=True) as q:
        await q.add("pay", 0, key="pay_D", job_id="d0", delay=600)
        await q.add("pay", 1, key="pay_D", job_id="d1")
        await q.add("pay", 2, key="pay_D", job_id="d2", delay=600)
        assert (await q.counts())["delayed"] == 1
        await q.remove("d0", actor="ops")
        view = await q.job("d1")
        assert view is not None and view.state == "waiting"
        assert await _lock(q, "pay_D") == "d1"
        assert [(a.action, a.from_state) for a in await q.audit("d0")] == [
            ("remove", "delayed")]
        assert await _run_all(queue_name, settings, 1) == [1]
        # d1 done: d2 let go to the delayed set (its delay still runs); removing it frees the key
        await wait_until(lambda: _state(q, "d2", "delayed"))
        await q.remove("d2")
        assert await _lock(q, "pay_D") is None
        assert await q.client.zcard(q.keys.delayed) == 0
        await q.obliterate(force=True)


async def test_a_job_that_does_not_hold_its_key_releases_nothing(
        redis_url: str, queue_name: str) -> None:
    """A job of the key added unordered (a producer without order) does not hold the key; a
    held job cannot be removed; a refused remove of the running holder releases nothing."""
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, ordered=True) as q, \
            Queue(queue_name, settings=settings, ordered=False) as free:
        await q.add("pay", 0, key="pay_N", job_id="n0")
        await q.add("pay", 1, key="pay_N", job_id="n1")
        await free.add("pay", 9, key="pay_N", job_id="n9")
        await q.remove("n9")
        assert await _lock(q, "pay_N") == "n0" and await _held_ids(q, "pay_N") == ["n1"]
        with pytest.raises(JobStateError, match="n1 is held"):
            await q.remove("n1")
        assert await _lock(q, "pay_N") == "n0" and await _held_ids(q, "pay_N") == ["n1"]
        await q.client.xreadgroup(settings.worker.group, "c1",
                                  {q.keys.level("normal"): ">"}, count=10)
        with pytest.raises(JobStateError, match="n0 is active"):
            await q.remove("n0")
        assert await _lock(q, "pay_N") == "n0" and await _held_ids(q, "pay_N") == ["n1"]
        await q.obliterate(force=True)


async def test_a_partitioned_queue_releases_in_the_partition_holding_the_job(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=3, ordered=True) as q:
        await q.add_bulk([JobSpec("pay", i, key="pay_P", job_id=f"p{i}") for i in range(2)])
        part = q.partition(partition_for("pay_P", 3))
        assert await _lock(part, "pay_P") == "p0"
        await q.remove("p0", key="pay_P")
        await _passed_to_the_last(part, "pay_P", "p1")
        assert await _run_all(queue_name, settings, 1) == [1]
        await q.obliterate(force=True)


async def test_removing_a_keyed_job_of_an_unordered_queue_still_works(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings) as q:
        await q.add("pay", 0, key="pay_U", job_id="u0")
        await q.add("pay", 1, key="pay_U", job_id="u1", delay=600)
        await q.remove("u0")
        await q.remove("u1")
        counts = await q.counts()
        assert counts["waiting"] == 0 and counts["delayed"] == 0
        assert not await q.client.exists(q.keys.keylocks)
        await q.obliterate(force=True)
