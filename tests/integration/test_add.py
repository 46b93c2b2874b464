"""Queue.add / add_bulk: ids, dedup, refusals before any write, delayed adds, durability."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from streamflow import Queue, StreamflowSettings, scripts
from streamflow.codec import decode_job
from streamflow.errors import (
    DurabilityError,
    PayloadNotSerializable,
    PayloadTooLarge,
    QueueFull,
    UnknownPriority,
)
from tests.servers import RedisProcess

pytestmark = pytest.mark.anyio


async def test_add_returns_a_level_qualified_id_and_writes_one_entry(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        job_id = await q.add("payment.captured", {"id": "pay_1"}, priority="high")
        assert job_id is not None and job_id.startswith("high:")
        entries = await q.client.xrange(q.keys.level("high"))
        assert [e[0].decode() for e in entries] == [job_id.split(":", 1)[1]]
        assert entries[0][1][b"n"] == b"payment.captured"
        counts = await q.counts()
        assert counts["levels"]["high"]["waiting"] == 1 and counts["waiting"] == 1


async def test_duplicate_job_id_is_refused_within_the_ttl(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        assert await q.add("payment.captured", {"n": 1}, job_id="evt_1") == "evt_1"
        for _ in range(4):  # the provider retries the webhook
            assert await q.add("payment.captured", {"n": 1}, job_id="evt_1") is None
        assert await q.client.xlen(q.keys.level("normal")) == 1
        ttl = await q.client.pttl(q.keys.status("evt_1"))  # the status record is the mark
        assert 0 < ttl <= 86_400_000
        assert await q.client.exists(q.keys.dedup("evt_1")) == 0  # no second key per job


async def test_refusals_write_nothing(redis_url: str, queue_name: str) -> None:
    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.max_payload_bytes = 1000
    async with Queue(queue_name, settings=settings) as q:
        with pytest.raises(PayloadTooLarge):
            await q.add("big", {"blob": "x" * 2000}, job_id="big_1")
        with pytest.raises(PayloadNotSerializable):
            await q.add("odd", {"when": object()}, job_id="odd_1")
        with pytest.raises(UnknownPriority):
            await q.add("x", {}, priority="urgent")
        with pytest.raises(PayloadTooLarge):  # one bad job refuses the whole bulk
            await q.add_bulk([("ok", {}), ("big", {"blob": "x" * 2000})])
        assert await q.client.exists(q.keys.status("big_1"), q.keys.status("odd_1")) == 0
        assert (await q.counts())["waiting"] == 0


async def test_bulk_add_keeps_order_and_refuses_duplicates(redis_url: str, queue_name: str) -> None:
    from streamflow import JobSpec

    async with Queue(queue_name, url=redis_url) as q:
        specs = [JobSpec("n", {"i": i}, job_id=f"bulk-{i % 2500}") for i in range(2600)]
        ids = await q.add_bulk(specs)
        assert ids[:2500] == [f"bulk-{i}" for i in range(2500)]
        assert ids[2500:] == [None] * 100
        assert await q.client.xlen(q.keys.level("normal")) == 2500
        plain = await q.add_bulk([("n", {"i": i}) for i in range(10)])
        assert len(set(plain)) == 10 and all(i and i.startswith("normal:") for i in plain)


async def test_bulk_add_of_mixed_jobs_keeps_each_job_where_it_belongs(
        redis_url: str, queue_name: str) -> None:
    # plain pairs travel as runs of one name and level; the others break the runs
    from streamflow import JobSpec

    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.events = "all"  # an added event per job, to check their order
    async with Queue(queue_name, settings=settings) as q:
        jobs: list[Any] = [("a", 1), ("a", 2), ["a", 3], JobSpec("a", 4, priority="high"),
                           ("b", 5), ("b", 6), JobSpec("a", 7, job_id="evt_7"), ("a", 8),
                           JobSpec("a", 9, delay=60), ("a", 10)]
        ids = await q.add_bulk(jobs)
        assert ids[6] == "evt_7" and ids[8] is not None and len(set(ids)) == 10
        seen: dict[str | None, tuple[str, str, Any]] = {}
        for level in q.keys.levels:
            for entry_id, fields in await q.client.xrange(q.keys.level(level)):
                job = decode_job(entry_id, fields, q.name, level)
                seen[job.id] = (level, job.name, job.data)
        expected = [("normal", "a", 1), ("normal", "a", 2), ("normal", "a", 3),
                    ("high", "a", 4), ("normal", "b", 5), ("normal", "b", 6),
                    ("normal", "a", 7), ("normal", "a", 8), None, ("normal", "a", 10)]
        assert [seen.get(job_id) for job_id in ids] == expected
        assert await q.client.zscore(q.keys.delayed, ids[8]) is not None
        added = [fields[b"i"].decode() for _, fields in await q.client.xrange(q.keys.events)]
        assert added == ids  # one event per job, in the order given


async def test_delayed_add_waits_in_the_delayed_set(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        job_id = await q.add("reminder", {"order": 1}, delay=timedelta(hours=24))
        assert job_id is not None
        assert await q.client.zscore(q.keys.delayed, job_id) is not None
        assert await q.client.hexists(q.keys.jobs, job_id)
        counts = await q.counts()
        assert counts["delayed"] == 1 and counts["waiting"] == 0


def _without_replica(redis_url: str) -> StreamflowSettings:
    """Settings for a Redis with no replica: a replicated add gives up waiting after 0.1 s."""
    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.replicated_timeout = 0.1
    return settings


async def test_replicated_durability_fails_loudly_without_a_replica(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=_without_replica(redis_url)) as q:
        with pytest.raises(DurabilityError, match="no replica confirmed"):
            await q.add("payment.captured", {}, job_id="evt_w", durability="replicated")
        # the retry with the same id stays single
        assert await q.add("payment.captured", {}, job_id="evt_w") is None


async def test_consumer_group_exists_at_zero_before_any_worker(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        await q.add("early", {})
    client = Redis.from_url(redis_url)
    try:
        groups = await client.xinfo_groups(f"sf:{{{queue_name}}}:p:normal")
        assert groups[0]["name"] == b"workers" and groups[0]["lag"] == 1
    finally:
        await client.aclose()


async def test_a_duplicate_across_bulk_chunks_is_refused(redis_url: str, queue_name: str) -> None:
    from streamflow import JobSpec

    async with Queue(queue_name, url=redis_url) as q:
        specs = [JobSpec("n", {"i": i}, job_id=f"c-{i % 1000}") for i in range(1001)]
        ids = await q.add_bulk(specs)
        assert ids[1000] is None  # the first job of the second chunk repeats the first one
        assert await q.client.xlen(q.keys.level("normal")) == 1000
        await q.obliterate(force=True)


async def test_a_job_with_its_own_id_is_stored_as_its_envelope(redis_url: str,
                                                             queue_name: str) -> None:
    from streamflow import Backoff
    from streamflow.codec import decode_job

    async with Queue(queue_name, url=redis_url) as q:
        assert await q.add("payment.captured", {"id": "pay_1"}, job_id="evt_9", attempts=5,
                           timeout=2.5, backoff=Backoff.fixed(1), priority="high") == "evt_9"
        [(entry_id, fields)] = await q.client.xrange(q.keys.level("high"))
        job = decode_job(entry_id, fields, queue_name, "high")
        assert (job.id, job.name, job.data, job.attempt) == ("evt_9", "payment.captured",
                                                             {"id": "pay_1"}, 1)
        assert (job.options.attempts, job.options.timeout, job.options.backoff,
                job.options.track) == (5, 2.5, Backoff.fixed(1), True)
        assert (await q.get_job("evt_9")) is not None
        await q.obliterate(force=True)


async def test_by_default_an_add_writes_no_event(redis_url: str, queue_name: str) -> None:
    # events="outcomes": what happens to a job is in the events stream, not each add
    from streamflow import JobSpec

    async with Queue(queue_name, url=redis_url) as q:
        assert q.settings.queue.events == "outcomes"
        await q.add("a", 1)
        await q.add("b", 2, job_id="evt_b", delay=60)
        ids = await q.add_bulk([("c", i) for i in range(1500)] + [JobSpec("d", 0, delay=60)])
        assert all(ids) and await q.client.xlen(q.keys.level("normal")) == 1501
        assert await q.client.exists(q.keys.events) == 0
        await q.obliterate(force=True)


@pytest.mark.parametrize("lua", ["fcall", "evalsha"])
async def test_a_bulk_add_after_a_flush_loads_the_moves_and_adds_each_job_once(
        redis_url: str, queue_name: str, lua: str) -> None:
    settings = StreamflowSettings.from_url(redis_url)
    settings.redis.lua = lua  # type: ignore[assignment]
    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("warm", 0)])  # settles FCALL or EVALSHA for the client
        await q.client.execute_command(*(("FUNCTION", "FLUSH") if lua == "fcall"
                                         else ("SCRIPT", "FLUSH")))
        ids = await q.add_bulk([("n", i) for i in range(2500)])
        entries = await q.client.xrange(q.keys.level("normal"))
        assert [f"normal:{entry.decode()}" for entry, _ in entries[1:]] == ids
        assert [fields[b"d"] for _, fields in entries[1:]] == [str(i).encode()
                                                               for i in range(2500)]
        await q.obliterate(force=True)


async def test_a_replicated_bulk_add_fails_loudly_without_a_replica(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, settings=_without_replica(redis_url)) as q:
        with pytest.raises(DurabilityError, match="no replica confirmed"):
            await q.add_bulk([("n", i) for i in range(1500)], durability="replicated")
        assert await q.client.xlen(q.keys.level("normal")) == 1500  # on the master
        await q.obliterate(force=True)


@pytest.mark.parametrize("key", [None, "pay_1"])
async def test_an_add_refused_by_a_full_redis_raises_queue_full(
        tmp_path: Path, queue_name: str, key: str | None) -> None:
    # docs/guarantees.md: adds fail with QueueFull (the ingress answers 503), ordered ones too
    with RedisProcess(tmp_path / "full", config=["maxmemory-policy noeviction"]) as server:
        async with Queue(queue_name, url=server.url, ordered=True) as q:
            await scripts.load_scripts(q.client)  # loaded while there is room
            await q.client.config_set("maxmemory", 1)  # every growing write is refused
            with pytest.raises(QueueFull, match="maxmemory"):
                await q.add("payment.captured", {}, job_id="evt_1", key=key)
            await q.client.config_set("maxmemory", 0)
            counts = await q.counts()
            assert (counts["waiting"], counts["held"]) == (0, 0)  # nothing of it written
            assert await q.add("payment.captured", {}, job_id="evt_1", key=key) == "evt_1"
