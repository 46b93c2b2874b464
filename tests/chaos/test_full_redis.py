"""A full Redis (``maxmemory`` reached, ``noeviction``) is a state the pipeline gets out of.

Workers keep acknowledging when Redis refuses growing writes (acks free memory, retention then
trims), producers get ``QueueFull`` instead of a raw ``OOM`` reply, a worker starts against a
full Redis whose groups exist, and once drained Redis accepts adds again. Nothing is lost.

Issue 11, item 2: on the old code the ack script was refused (it wrote the ``completed`` event
before the XACK), the flush dropped it, the pending entries blocked trimming, and the queue
stayed full for ever; a new worker could not start (XGROUP CREATE is refused under OOM).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from consumers.razorpay.ingress import create_app
from consumers.razorpay.sample import sample_event, sign_event
from consumers.razorpay.settings import RazorpaySettings
from streamflow import JobSpec, Queue, scripts
from streamflow.errors import QueueFull
from tests.integration.razorpay_support import SECRET
from tests.servers import RedisProcess, RedisServer
from tests.support import wait_until
from tests.workers import start_worker

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(300)]

MAXMEMORY = ["maxmemory 6mb", "maxmemory-policy noeviction"]
BATCH = 500


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis of its own with a small ``maxmemory``: the test fills it."""
    with RedisProcess(tmp_path / "full", config=MAXMEMORY) as server:
        yield server


async def fill(q: Queue) -> list[str]:
    """Add ``record`` jobs until Redis refuses one; returns the ids of those it took."""
    added: list[str] = []
    while True:
        try:
            ids = await q.add_bulk([JobSpec("record", {"pad": "x" * 100})] * BATCH)
        except QueueFull:
            return added
        added += [i for i in ids if i]


def used_memory(server: RedisProcess) -> tuple[int, int]:
    client = redis.Redis.from_url(server.url)
    try:
        info = client.info("memory")
        return int(info["used_memory"]), int(info["maxmemory"])
    finally:
        client.close()


def over_the_limit(server: RedisProcess) -> None:
    """Lower ``maxmemory`` under what Redis holds: every growing write is refused from now
    until workers free 1 MB (a fill alone can end a little under the limit)."""
    used, _ = used_memory(server)
    client = redis.Redis.from_url(server.url)
    try:
        client.config_set("maxmemory", used - 2**20)
    finally:
        client.close()


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)


async def drained_and_recorded(q: Queue, record: redis.Redis, ids: list[str],
                               workers: list[subprocess.Popen[bytes]]) -> bool:
    for proc in workers:
        assert proc.poll() is None, f"a worker exited with code {proc.returncode}"
    counts = await q.counts()
    if counts["pending"] or counts["waiting"]:
        return False
    done = {i.decode() for i in record.lrange(f"{q.name}:processed", 0, -1)}
    return done >= set(ids)


async def add_again(q: Queue) -> list[str]:
    """The first add Redis takes again (retention frees memory as the workers drain)."""
    added: list[str] = []

    async def accepted() -> bool:
        try:
            added.extend(i for i in await q.add_bulk([JobSpec("record", {"again": True})]) if i)
        except QueueFull:
            return False
        return True

    await wait_until(accepted, timeout=60, interval=0.1)
    return added


async def test_a_full_redis_drains_with_workers_running_and_takes_adds_again(
        full_redis: RedisProcess, redis_server: RedisServer, queue_name: str) -> None:
    record = redis.Redis.from_url(redis_server.url)
    env = {"STREAMFLOW_TEST_RECORD_URL": redis_server.url}
    workers = [start_worker(full_redis.url, queue_name, consumer=f"w{i}", concurrency=50, **env)
               for i in range(2)]
    try:
        async with Queue(queue_name, url=full_redis.url) as q:
            await wait_until(lambda: _workers_registered(q, 2), timeout=30)
            ids = await fill(q)
            used, limit = used_memory(full_redis)
            assert used > limit * 0.9  # it really was full
            over_the_limit(full_redis)  # and stays so until the workers free 1 MB
            await wait_until(lambda: drained_and_recorded(q, record, ids, workers), timeout=150,
                             interval=0.2)
            again = await add_again(q)
            await wait_until(lambda: drained_and_recorded(q, record, ids + again, workers),
                             timeout=60)
            assert (await q.counts())["dead"] == 0
    finally:
        stop(workers)
        record.delete(f"{queue_name}:processed", f"{queue_name}:times")
        record.close()


async def test_a_worker_starts_against_a_full_redis_and_drains_it(
        full_redis: RedisProcess, redis_server: RedisServer, queue_name: str) -> None:
    record = redis.Redis.from_url(redis_server.url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with Queue(queue_name, url=full_redis.url) as q:  # creates the groups
            ids = await fill(q)
            assert len(ids) > 1000
            over_the_limit(full_redis)
            workers.append(start_worker(full_redis.url, queue_name, consumer="late",
                                        concurrency=50,
                                        STREAMFLOW_TEST_RECORD_URL=redis_server.url))
            await wait_until(lambda: drained_and_recorded(q, record, ids, workers), timeout=150,
                             interval=0.2)
            again = await add_again(q)
            await wait_until(lambda: drained_and_recorded(q, record, ids + again, workers),
                             timeout=60)
    finally:
        stop(workers)
        record.delete(f"{queue_name}:processed", f"{queue_name}:times")
        record.close()


async def _workers_registered(q: Queue, n: int) -> bool:
    return int(await q.client.hlen(q.keys.workers)) >= n


async def test_every_ack_script_goes_through_when_redis_is_full_and_skips_its_event(
        full_redis: RedisProcess, queue_name: str) -> None:
    """Completed, retried and dead-lettered entries are acknowledged (and the retry and the
    dead letter written) although Redis refuses growing writes; the optional events and results
    are skipped."""
    async with Queue(queue_name, url=full_redis.url) as q:
        keys, group = q.keys, q.settings.worker.group
        stream = keys.level("normal")
        await fill(q)
        read = await q.client.xreadgroup(group, "c", {stream: ">"}, count=3)
        done_id, retry_id, dead_id = (entry_id.decode() for entry_id, _ in read[0][1])
        over_the_limit(full_redis)
        with pytest.raises(redis.OutOfMemoryError):
            await q.client.xadd(keys.events, {"e": "probe"})  # really full
        events_before = await q.client.xlen(keys.events)

        minute = keys.metrics_minute(0)
        completed = await scripts.call(q.client, scripts.COMPLETE_JOBS,
                                       [stream, keys.events, keys.done, keys.where, minute],
                                       [group, "1", 10_000, 1000, "0", 60_000, 1, 0, 1,
                                        done_id, "j1", "record", 5, "j1", "record", 5,
                                        b'"ok"'])
        retried = await scripts.call(q.client, scripts.RETRY_LATER,
                                     [stream, keys.delayed, keys.jobs, keys.events, keys.where],
                                     [group, retry_id, "j2", int(time.time() * 1000) + 60_000,
                                      "record", "1", 10_000, "record", 1, "boom", "retrying"])
        dead = await scripts.call(q.client, scripts.MOVE_TO_DEAD,
                                  [stream, keys.dead, keys.events, keys.where, minute],
                                  [group, dead_id, "j3", "failed", "boom", "", 0, "normal", "1",
                                   10_000, 0, "0", 60_000, "n", "record"])
        assert (completed, retried) == (1, 1) and dead
        assert (await q.client.xpending(stream, group))["pending"] == 0
        assert await q.client.zscore(keys.delayed, "j2") is not None
        assert await q.client.hget(keys.jobs, "j2") == b"record"
        assert await q.client.xlen(keys.dead) == 1
        assert await q.client.xlen(keys.events) == events_before  # skipped: Redis was full
        assert await q.client.xlen(keys.done) == 0
        assert not await q.client.exists(minute)  # the per-minute counts are optional too


async def test_the_ingress_answers_503_with_retry_after_when_redis_is_full(
        full_redis: RedisProcess, queue_name: str) -> None:
    """Razorpay retries a 503: the webhook is neither lost nor half-written."""
    async with Queue(queue_name, url=full_redis.url) as q:
        await fill(q)
        over_the_limit(full_redis)
        waiting = (await q.counts())["waiting"]
        app = create_app(RazorpaySettings(webhook_secret=SECRET, queue=queue_name), queue=q)
        webhook = sign_event(sample_event("payment.captured"), SECRET, "evt_full_1")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://ingress") as client:
            response = await client.post("/webhooks/razorpay", content=webhook.body,
                                         headers=webhook.headers())
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert (await q.counts())["waiting"] == waiting
        assert await q.get_job("evt_full_1") is None
