"""The idle worker's pipelined wait: ``XREAD BLOCK`` and the fetch-script call in one write.

Redis runs the queued fetch as soon as the XREAD returns, so what it claimed is on its way to
the worker whatever the worker does next: a stop must read it and run it, never leave it
pending for the reclaimer. The fetch's ``now`` was taken before the wait; a lost function
library or a lost connection sends the worker the usual way.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from streamflow import Job, JobSpec, Queue, Worker, scripts
from streamflow.codec import decode_job
from streamflow.queue import ensure_groups
from streamflow.worker.fetcher import FetchState
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


def idle(*workers: Worker) -> bool:
    return all(worker.fetcher.state is FetchState.WAITING for worker in workers)


def recorder() -> tuple[list[Any], Callable[[Job], Awaitable[None]]]:
    """A handler that records each job's data, and the list it records to."""
    ran: list[Any] = []

    async def handler(job: Job) -> None:
        ran.append(job.data)

    return ran, handler


async def pending(q: Queue, group: str) -> int:
    total = 0
    for stream in q.keys.streams:
        total += int((await q.client.xpending(stream, group))["pending"])
    return total


async def wake_streams(q: Queue) -> list[bytes]:
    return [key async for key in q.client.scan_iter(match=f"{q.keys.base}:wake:*")]


async def test_stop_while_an_add_arrives_leaves_nothing_pending(
        redis_url: str, queue_name: str) -> None:
    """Idle workers stopped while a job arrives, many times over, in varying order: every job
    the fetch claimed ran before the workers stopped; the others still wait, unclaimed."""
    settings = fast_settings(redis_url)
    settings.worker.block_ms = 3000  # every worker is in its wait when it is stopped
    ran, handler = recorder()

    rounds = 40
    async with Queue(queue_name, settings=settings) as q:
        for i in range(rounds):
            workers = [Worker(queue_name, handler, settings=settings, concurrency=2)
                       for _ in range(2)]
            async with anyio.create_task_group() as tg:
                for worker in workers:
                    tg.start_soon(partial(worker.run, handle_signals=False))
                await wait_until(lambda ws=workers: idle(*ws), interval=0.005)
                if i % 3 == 0:  # the add lands, then the stop
                    await q.add("j", i)
                    for worker in workers:
                        tg.start_soon(worker.close)
                elif i % 3 == 1:  # the stop starts, then the add lands
                    for worker in workers:
                        tg.start_soon(worker.close)
                    await anyio.lowlevel.checkpoint()
                    await q.add("j", i)
                else:  # both under way together
                    tg.start_soon(partial(q.add, "j", i))
                    for worker in workers:
                        tg.start_soon(worker.close)
            assert await pending(q, settings.worker.group) == 0, f"round {i}"
        waiting = (await q.counts())["waiting"]
        assert len(ran) + waiting == rounds
        assert len(set(ran)) == len(ran)
        assert await wake_streams(q) == []  # each stop deleted the wake stream it wrote
        # what was left waiting runs at once on the next worker: nothing waits to be reclaimed
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: len(ran) == rounds)
        assert sorted(ran) == list(range(rounds))


async def test_a_limit_over_during_the_wait_is_not_waited_for(
        redis_url: str, queue_name: str) -> None:
    """The pipelined fetch was sent with the time of the wait's start: a queue limit that
    began and ended during the wait must not hold the job that woke the worker."""
    settings = fast_settings(redis_url)
    settings.worker.block_ms = 8000
    ran, handler = recorder()

    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: idle(worker))
            limit_end = time.time() + 1.5
            await q.rate_limit(1.5)  # limited_until: well after the `now` the wait sent
            await wait_until(lambda: time.time() > limit_end + 0.05, timeout=5)
            seen: list[FetchState] = []

            async def watch() -> None:
                while not ran:
                    seen.append(worker.fetcher.state)
                    await anyio.sleep(0.001)

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await q.add("j", 1)
                await wait_until(lambda: ran == [1], interval=0.005)
            assert FetchState.LIMITED not in seen  # it did not sleep on a limit already over


async def test_lost_functions_while_idle(redis_url: str, queue_name: str) -> None:
    """FUNCTION FLUSH while the worker waits: the pipelined call is refused ("Function not
    found"), the usual call loads the library again, and the job runs. (The producer calls
    by EVALSHA here, so that its add does not load the library before the worker wakes.)"""
    settings = fast_settings(redis_url)
    settings.worker.block_ms = 8000  # no wait ends on its own between the flush and the add
    producer = fast_settings(redis_url)
    producer.redis.lua = "evalsha"
    ran, handler = recorder()

    async with Queue(queue_name, settings=producer) as q:
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await q.add("j", 0)  # the producer's scripts are loaded
            await wait_until(lambda: ran == [0])
            ran.clear()
            await wait_until(lambda: idle(worker))
            await q.client.execute_command("FUNCTION", "FLUSH")
            before = worker.fetcher.rounds
            await q.add("j", 1)
            await wait_until(lambda: ran == [1])
            assert worker.fetcher.rounds >= before + 2  # the refused call, then the usual one
            await wait_until(lambda: idle(worker))
            await q.add("j", 2)
            await wait_until(lambda: ran == [1, 2])
        assert await pending(q, settings.worker.group) == 0


async def test_killed_connections_while_idle(redis_url: str, queue_name: str) -> None:
    """Every connection of an idle worker killed (its blocked wait among them): it waits and
    fetches again, and the next jobs run."""
    settings = fast_settings(redis_url)
    ran, handler = recorder()

    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            for i in range(3):
                await wait_until(lambda: idle(worker))
                name = f"streamflow-worker-{worker.consumer}"
                clients = await q.client.client_list()
                killed = [c["id"] for c in clients if c.get("name") == name
                          and "xread" in str(c.get("cmd", ""))]
                assert killed, "the idle worker blocks in XREAD on a connection of its own"
                for client_id in killed:
                    await q.client.execute_command("CLIENT", "KILL", "ID", client_id)
                await q.add("j", i)
                await wait_until(lambda i=i: len(ran) == i + 1)
        assert ran == [0, 1, 2]
        assert await pending(q, settings.worker.group) == 0


async def test_a_left_wake_stream_is_cleared(redis_url: str, queue_name: str) -> None:
    """A wake stream left by a dead worker of the same name (it expires anyway) would wake
    every wait at once: the worker deletes it and waits normally."""
    settings = fast_settings(redis_url)
    settings.worker.block_ms = 8000
    async with Queue(queue_name, settings=settings) as q:
        worker = Worker(queue_name, lambda job: None, settings=settings, consumer="same-name")
        key = f"{q.keys.base}:wake:same-name"
        await q.client.xadd(key, {"stop": 1})
        async with running(worker):
            await wait_until(lambda: idle(worker))
            await wait_until(lambda: worker.fetcher.rounds >= 2)
            assert await q.client.exists(key) == 0
            rounds = worker.fetcher.rounds
            await q.add("j", 1)  # a job still wakes it, with one more fetch
            await wait_until(lambda: worker.processed == 1)
            assert worker.fetcher.rounds == rounds + 1
        assert await wake_streams(q) == []


async def test_idle_partitions_wake_within_the_shared_concurrency(
        redis_url: str, queue_name: str) -> None:
    """Each partition of a partitioned worker waits with its fetch queued behind its XREAD;
    jobs arriving on every partition at once still start no more than the concurrency."""
    settings = fast_settings(redis_url)
    settings.worker.block_ms = 3000
    release = anyio.Event()
    started: list[int] = []

    async def handler(job: Job) -> None:
        started.append(job.data)
        await release.wait()

    async with Queue(queue_name, settings=settings, partitions=3) as q:
        worker = Worker(queue_name, handler, settings=settings, concurrency=8)
        async with running(worker):
            await wait_until(lambda: len(worker.parts) == 3 and all(
                part.fetcher.pipelined for part in worker.parts))
            await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(30)])
            await wait_until(lambda: len(started) == 8)
            await wait_until(lambda: all(part.fetcher.state is FetchState.FULL
                                         for part in worker.parts))
            claimed = 0
            for i in range(3):
                claimed += await pending(q.partition(i), settings.worker.group)
            assert claimed == 8 and len(started) == 8  # not one fetch's worth per partition
            release.set()
            await wait_until(lambda: len(started) == 30)
        assert sorted(started) == list(range(30))
        await q.obliterate(force=True)


async def test_workers_that_lose_the_wake_wait_the_plain_way(
        redis_url: str, queue_name: str) -> None:
    """The herd: idle workers all wake for one job; those whose fetch found it taken wait
    without a queued fetch (as before the pipelined wait), the one that took it keeps its
    fetch queued, and takes the next job first."""
    settings = fast_settings(redis_url)
    settings.worker.block_ms = 8000
    async with Queue(queue_name, settings=settings) as q:
        workers = [Worker(queue_name, lambda job: None, settings=settings, consumer=f"w{i}")
                   for i in range(4)]

        def pipelined() -> int:
            return sum(worker.fetcher.pipelined for worker in workers)

        async with running(*workers):
            await wait_until(lambda: idle(*workers) and pipelined() == 4)
            await q.add("j", 1)
            await wait_until(lambda: sum(w.processed for w in workers) == 1)
            await wait_until(lambda: idle(*workers) and pipelined() == 1)
            [winner] = [w for w in workers if w.fetcher.pipelined]
            for i in range(2, 5):
                await q.add("j", i)
                await wait_until(lambda i=i: sum(w.processed for w in workers) == i)
                await wait_until(lambda: idle(*workers) and pipelined() == 1)
            assert winner.processed == 4 and winner.fetcher.pipelined


async def test_an_idle_worker_acknowledges_in_the_write_of_its_next_wait(
        redis_url: str, queue_name: str) -> None:
    """A job that finished before its worker waits again is acknowledged in the same write as
    that wait, on the wait's connection, just ahead of its XREAD: at light load one write
    per job, not one for the ack and one for the wait."""
    settings = fast_settings(redis_url)
    settings.worker.block_ms = 5000
    ran, handler = recorder()
    seen: list[tuple[str, str]] = []  # (client, command) as MONITOR shows them, scripts' own out

    def acked_with_a_wait() -> bool:
        for (client, command), (after, following) in itertools.pairwise(seen):
            if (command.startswith(f"FCALL {scripts.COMPLETE_JOBS.function} ")
                    and following.startswith("XREAD ") and after == client):
                return True
        return False

    async with Queue(queue_name, settings=settings) as q, \
            aioredis.Redis.from_url(redis_url) as watcher:
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker), watcher.monitor() as monitor, \
                anyio.create_task_group() as tg:

            async def watch() -> None:
                async for command in monitor.listen():
                    if command.get("client_type") != "lua":
                        seen.append((f"{command.get('client_address')}:"
                                     f"{command.get('client_port')}", command["command"]))

            tg.start_soon(watch)
            await wait_until(lambda: idle(worker))
            for i in range(3):
                await q.add("j", i)
                await wait_until(lambda i=i: len(ran) == i + 1)
                await wait_until(lambda: idle(worker))
            await wait_until(acked_with_a_wait)
            tg.cancel_scope.cancel()
        assert await pending(q, settings.worker.group) == 0


async def test_acks_lent_to_a_wait_stay_with_the_acker_when_not_taken(
        redis_url: str, queue_name: str) -> None:
    """Acks written ahead of a wait whose connection was lost, or answered by an error reply,
    stay with the acker, not counted as refusals, and its next round sends them."""
    settings = fast_settings(redis_url)
    worker = Worker(queue_name, lambda job: None, settings=settings)
    async with Queue(queue_name, settings=settings) as q:
        client = worker.client
        try:
            await ensure_groups(client, worker.keys, worker.group)
            await scripts.load_scripts(client)
            acker = worker._acker
            acker.client = client
            for reply in (None, [ResponseError("NOSCRIPT No matching script")]):
                await q.add("j", 0)
                [[_, [(entry_id, fields)]]] = await client.xreadgroup(
                    worker.group, worker.consumer, {worker.keys.streams[1]: ">"}, count=1)
                job = decode_job(entry_id, fields, queue_name, "normal")
                worker._outcomes.completed(job, 1, None)
                lent = acker.lend()
                assert lent is not None and len(lent) == 1
                assert acker.lend() is None  # one lender at a time
                acker.settle(reply)
                assert await pending(q, worker.group) == 1
                await acker.flush()  # the round of the acker's loop
                assert await pending(q, worker.group) == 0
                assert acker.lend() is None  # nothing left
        finally:
            await client.aclose()


async def test_an_ack_buffered_while_a_wait_holds_the_acks_is_sent_by_the_acker(
        redis_url: str, queue_name: str) -> None:
    """A job that finishes after a wait took (lent) the acker's buffer: the acker's loop sends
    its ack once the wait settled, it is not skipped as sent with the wait."""
    settings = fast_settings(redis_url)
    worker = Worker(queue_name, lambda job: None, settings=settings)
    async with Queue(queue_name, settings=settings) as q:
        client = worker.client
        try:
            await ensure_groups(client, worker.keys, worker.group)
            await scripts.load_scripts(client)
            acker = worker._acker
            acker.client = client
            await q.add_bulk([JobSpec("j", i) for i in range(2)])
            [[_, entries]] = await client.xreadgroup(
                worker.group, worker.consumer, {worker.keys.streams[1]: ">"}, count=2)
            first, second = (decode_job(entry_id, fields, queue_name, "normal")
                             for entry_id, fields in entries)
            async with anyio.create_task_group() as tg:
                await tg.start(acker.loop)
                worker._outcomes.completed(first, 1, None)
                acker.wanted()
                lent = acker.lend()  # the wait takes the first ack, before the loop runs
                assert lent is not None and len(lent) == 1
                worker._outcomes.completed(second, 1, None)  # meanwhile the next job ends
                acker.wanted()
                replies = [await client.execute_command(*command) for command in lent]
                acker.settle(replies)

                async def all_acked() -> bool:
                    return await pending(q, worker.group) == 0

                await wait_until(all_acked)
                tg.cancel_scope.cancel()
        finally:
            await client.aclose()
