"""A reply lost after Redis ran an add: redis-py's retry sends it again, and it must not count
twice (a retried add returns what the first try did; a retried add with a job_id returns that
id, not "duplicate")."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from streamflow import JobSpec, Queue, StreamflowSettings, scripts
from streamflow.errors import DurabilityError
from tests.faultproxy import FaultProxy
from tests.servers import RedisProcess, RedisServer
from tests.support import wait_until

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _proxied(port: int, queue_name: str, replicated_timeout: float | None = None
                   ) -> AsyncIterator[tuple[FaultProxy, Queue]]:
    """A queue reaching Redis at ``port`` through a proxy that can drop a reply, its moves
    loaded (the dropped reply is the add's); obliterated after the test's checks."""
    with FaultProxy(port) as proxy:
        settings = StreamflowSettings.from_url(proxy.url)
        settings.redis.retry_backoff_base = 0.01
        if replicated_timeout is not None:
            settings.queue.replicated_timeout = replicated_timeout
        async with Queue(queue_name, settings=settings) as q:
            await scripts.load_scripts(q.client)
            yield proxy, q
            await q.obliterate(force=True)


async def _entries(q: Queue) -> list[str]:
    return [f"normal:{entry_id.decode()}"
            for entry_id, _ in await q.client.xrange(q.keys.level("normal"))]


async def test_a_retried_add_with_a_job_id_returns_its_id(redis_server: RedisServer,
                                                          queue_name: str) -> None:
    async with _proxied(redis_server.port, queue_name) as (proxy, q):
        proxy.drop_reply_after(b"FCALL")
        assert await q.add("payment.captured", {"id": "pay_1"}, job_id="evt_1") == "evt_1"
        assert proxy.dropped_replies == 1
        assert len(await _entries(q)) == 1
        assert await q.add("payment.captured", {"id": "pay_1"}, job_id="evt_1") is None


async def test_a_retried_add_without_an_id_writes_one_entry(redis_server: RedisServer,
                                                           queue_name: str) -> None:
    async with _proxied(redis_server.port, queue_name) as (proxy, q):
        proxy.drop_reply_after(b"FCALL")
        job_id = await q.add("payment.captured", {"id": "pay_1"})
        assert proxy.dropped_replies == 1
        assert await _entries(q) == [job_id]


async def test_a_retried_bulk_add_never_writes_twice(redis_server: RedisServer,
                                                     queue_name: str) -> None:
    async with _proxied(redis_server.port, queue_name) as (proxy, q):
        proxy.drop_reply_after(b"FCALL")
        ids = await q.add_bulk([("refund.created", {"n": i}) for i in range(100)])
        assert proxy.dropped_replies == 1
        assert await _entries(q) == ids and len(set(ids)) == 100


async def test_a_bulk_add_whose_reply_is_lost_in_a_later_chunk(redis_server: RedisServer,
                                                               queue_name: str) -> None:
    async with _proxied(redis_server.port, queue_name) as (proxy, q):
        jobs = [("refund.created", {"n": i}) for i in range(2500)]
        proxy.drop_reply_after(b"FCALL", count=2)
        ids = await q.add_bulk(jobs)
        assert proxy.dropped_replies >= 1
        assert await _entries(q) == ids and len(set(ids)) == 2500


async def test_a_coalesced_call_whose_reply_is_lost_answers_every_caller_once(
        redis_server: RedisServer, queue_name: str) -> None:
    import anyio

    async with _proxied(redis_server.port, queue_name) as (proxy, q):
        proxy.drop_reply_after(b"FCALL", count=3)
        answers: dict[int, str | None] = {}

        async def call(i: int) -> None:
            answers[i] = await q.add("n", {"i": i}, job_id=f"evt_{i}" if i % 2 else None)

        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(call, i)
        assert proxy.dropped_replies >= 1
        entries = await q.client.xrange(q.keys.level("normal"))
        assert len(entries) == 60
        plain = {f"normal:{e.decode()}" for e, f in entries if b"i" not in f}
        assert {answers[i] for i in range(0, 60, 2)} == plain
        assert all(answers[i] == f"evt_{i}" for i in range(1, 60, 2))


async def test_a_replicated_add_sent_again_is_confirmed_only_once_a_replica_has_it(
        redis_server: RedisServer, queue_name: str, tmp_path: Path) -> None:
    # WAIT counts replicas at the offset of the connection it is sent on: the retry's new
    # connection wrote nothing when the script found its own reply, so a WAIT there covered
    # nothing and confirmed a job the (stopped) replica never received
    with RedisProcess(tmp_path / "master") as master, \
            RedisProcess(tmp_path / "replica",
                         config=[f"replicaof {master.host} {master.port}"]) as replica:
        probe = master.client()
        await wait_until(lambda: probe.info("replication").get("slave0", {}).get("state")
                         == "online", timeout=30)  # WAIT counts online replicas only
        async with _proxied(master.port, queue_name, replicated_timeout=0.3) as (proxy, q):
            assert replica.pid is not None
            for job_id in ("evt_1", None):
                os.kill(replica.pid, signal.SIGSTOP)  # the replica stops taking writes
                try:
                    proxy.drop_reply_after(b"FCALL")
                    with pytest.raises(DurabilityError):
                        await q.add("payment.captured", {"id": "pay_1"}, job_id=job_id,
                                    durability="replicated")
                    assert proxy.dropped_replies >= 1
                finally:
                    os.kill(replica.pid, signal.SIGCONT)
                # once the replica has it, the same add is confirmed (and not written twice)
                if job_id is not None:
                    assert await q.add("payment.captured", {"id": "pay_1"}, job_id=job_id,
                                       durability="replicated") is None
            assert len(await _entries(q)) == 2


async def test_a_retried_mixed_bulk_add_answers_exactly_what_the_first_try_did(
        redis_server: RedisServer, queue_name: str) -> None:
    # the reply record holds the answer of a chunk: ids, a duplicate, and a job id "0" (which
    # must not read back as a duplicate)
    async with _proxied(redis_server.port, queue_name) as (proxy, q):
        assert await q.add("x", {}, job_id="taken") == "taken"
        jobs = [("refund.created", {"n": 1}), JobSpec("refund.created", {}, job_id="0"),
                JobSpec("refund.created", {}, job_id="taken"),
                ("refund.created", {"n": 2})]
        proxy.drop_reply_after(b"FCALL")
        ids = await q.add_bulk(jobs)
        assert proxy.dropped_replies == 1
        assert ids[1:3] == ["0", None]
        entries = await _entries(q)
        assert len(entries) == 4  # "taken", then three new jobs: nothing written twice
        assert ids[0] in entries and ids[3] in entries  # id-less jobs: named by entry
