"""Retention: MINID trimming drops acked entries, never pending or unread ones; consumers that
are gone are removed only once they hold nothing."""

from __future__ import annotations

import time

import anyio
import orjson
import pytest

from streamflow import Job, Queue, Worker
from streamflow.retention import remove_gone_consumers, trim_streams
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_trim_keeps_pending_and_unread_entries(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        stream = q.keys.level("normal")
        await q.add_bulk([("j", i) for i in range(30)])
        entries = [e[0] for e in await q.client.xrange(stream)]
        await q.client.xreadgroup("workers", "c1", {stream: ">"}, count=20)
        # 0..9 acked, 10 left pending, 11..19 acked, 20..29 never read
        await q.client.xack(stream, "workers", *entries[:10], *entries[11:20])
        removed = await trim_streams(q.client, q.keys, exact=True)
        left = [e[0] for e in await q.client.xrange(stream)]
        assert removed == 10
        assert left == entries[10:]  # the pending one and everything after it
        # a second group that has read nothing holds every entry
        await q.client.xgroup_create(stream, "audit", id="0")
        await q.client.xack(stream, "workers", entries[10])
        assert await trim_streams(q.client, q.keys, exact=True) == 0
        assert len(await q.client.xrange(stream)) == 20


async def test_one_trim_catches_up_with_any_number_of_acked_entries(
        redis_url: str, queue_name: str) -> None:
    """Sustained load acks more than XTRIM's default approximate cap (10,000 entries a call)
    between two janitor rounds; one call must still remove them all (issue 11, item 1)."""
    async with Queue(queue_name, url=redis_url) as q:
        stream = q.keys.level("normal")
        total = 25_000
        await q.add_bulk([("j", i) for i in range(total)])
        read = await q.client.xreadgroup("workers", "c1", {stream: ">"}, count=total)
        ids = [entry_id for entry_id, _ in read[0][1]]
        for start in range(0, total, 5000):
            await q.client.xack(stream, "workers", *ids[start:start + 5000])
        # the last delivered entry stays: it marks where the group has read up to
        assert await trim_streams(q.client, q.keys) == total - 1
        assert await q.client.xlen(stream) == 1
        await q.add_bulk([("j", i) for i in range(total)])
        read = await q.client.xreadgroup("workers", "c1", {stream: ">"}, count=total)
        ids = [entry_id for entry_id, _ in read[0][1]]
        for start in range(0, total - 1, 5000):
            await q.client.xack(stream, "workers", *ids[start:min(start + 5000, total - 1)])
        # whole nodes only: everything before the node holding the last (pending) entry
        assert await trim_streams(q.client, q.keys, exact=False) >= total - 200
        assert (await q.counts())["pending"] == 1


async def test_worker_janitor_trims_processed_entries(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)

    async def handler(job: Job) -> None:
        return None

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("j", i) for i in range(1000)])  # > one stream node (100 entries)
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed == 1000)
            await wait_until(lambda: _short(q), timeout=10)
        counts = await q.counts()
        assert counts["waiting"] == 0 and counts["pending"] == 0


async def _short(q: Queue) -> bool:
    return int(await q.client.xlen(q.keys.level("normal"))) < 200


async def test_gone_consumers_are_removed_only_when_they_hold_nothing(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        stream = q.keys.level("normal")
        await q.add_bulk([("j", i) for i in range(2)])
        await q.client.xreadgroup("workers", "holder", {stream: ">"}, count=1)
        await q.client.xreadgroup("workers", "empty", {stream: ">"}, count=1)
        entry = (await q.client.xpending_range(stream, "workers", "-", "+", 10, "empty"))[0]
        await q.client.xack(stream, "workers", entry["message_id"])
        stale = orjson.dumps({"last_seen_ms": int(time.time() * 1000) - 3_600_000})
        await q.client.hset(q.keys.workers, mapping={"holder": stale, "empty": stale})
        await anyio.sleep(0.05)
        removed = await remove_gone_consumers(q.client, q.keys, "workers", stale_after_ms=10)
        assert removed == ["empty"]
        names = {c["name"] for c in await q.client.xinfo_consumers(stream, "workers")}
        assert names == {b"holder"}
        assert (await q.counts())["pending"] == 1  # nothing lost
