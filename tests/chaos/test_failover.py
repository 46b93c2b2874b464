"""SIGKILL the Sentinel-managed master under load: no job is lost, no worker process dies.

A producer adds 20,000 jobs with caller ids and ``durability="replicated"`` while two worker
processes (``tests.apps:record``) consume through a ``redis+sentinel://`` URL. After about
5,000 adds the master is killed with SIGKILL; Sentinel promotes the replica, the old master is
restarted and Sentinel turns it into a replica of the new one (so that ``WAIT 1`` can succeed
again). The producer retries every batch that failed (connection error or no replica
confirmation) with the same ids, which the dedup marks keep single.

The handlers record each processed id on a separate plain redis-server that no failover
touches, so the record survives. Printed: duplicates and the time from the kill to the first
job completed on the new master (``-s`` to see it).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamflow import JobSpec, Queue, StreamflowSettings
from streamflow.errors import DurabilityError
from tests.servers import RedisProcess, SentinelTopology
from tests.workers import start_worker

pytestmark = pytest.mark.anyio

TOTAL = 20_000
BATCH = 100
WORKER_ENV = {
    "STREAMFLOW_WORKER__STALLED_INTERVAL": "2",
    "STREAMFLOW_WORKER__HEARTBEAT_INTERVAL": "1",
    "STREAMFLOW_WORKER__PROMOTE_INTERVAL": "0.1",
    "STREAMFLOW_QUEUE__REMOVE_ON_COMPLETE": "100000",  # keep every completion for the timing
    "STREAMFLOW_QUEUE__EVENTS": "none",
}


def sentinel_url(topology: SentinelTopology) -> str:
    hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinel_addresses)
    return f"redis+sentinel://{hosts}/{topology.service_name}/0"


@pytest.mark.parametrize(("how", "total"), [("kill", TOTAL), ("demote", 5_000)])
async def test_no_job_is_lost_when_the_master_moves(
        sentinel_topology: SentinelTopology, queue_name: str, tmp_path: Path, how: str,
        total: int) -> None:
    """``kill``: SIGKILL of the master. ``demote``: ``SENTINEL FAILOVER``, the old master
    becomes a replica under its connected clients (READONLY replies, unblocked reads)."""
    topology = sentinel_topology
    url = sentinel_url(topology)
    with RedisProcess(tmp_path / "record", config=["maxmemory-policy noeviction"]) as record:
        env = {**WORKER_ENV, "STREAMFLOW_TEST_RECORD_URL": record.url}
        workers = [start_worker(url, queue_name, consumer=f"w{i}", concurrency=32, **env)
                   for i in (1, 2)]
        recorder = aioredis.Redis.from_url(record.url)
        try:
            report = await _run(topology, url, queue_name, recorder, workers, how, total)
            processed = [item.decode() for item in
                         await recorder.lrange(f"{queue_name}:processed", 0, -1)]
        finally:
            for proc in workers:
                _stop(proc)
            await recorder.aclose()

    expected = {f"evt-{i}" for i in range(total)}
    seen = set(processed)
    assert expected - seen == set(), f"lost: {len(expected - seen)} jobs"
    assert seen <= expected
    duplicates = len(processed) - len(seen)
    print(f"\nfailover ({how}): {total} jobs, {duplicates} processed twice or more; "
          f"failover (all sentinels agree) {report['failover_s']:.2f}s; "
          f"kill -> first job completed on the new master {report['first_completion_s']:.2f}s; "
          f"producer retried {report['retried_batches']} batches "
          f"({report['durability_errors']} without replica confirmation); "
          f"total {report['total_s']:.1f}s")


async def _run(topology: SentinelTopology, url: str, queue_name: str,
               recorder: aioredis.Redis, workers: list[subprocess.Popen[bytes]], how: str,
               total: int) -> dict[str, float]:
    settings = StreamflowSettings.from_url(url)
    settings.queue.events = "none"
    settings.queue.replicated_timeout = 1.0
    started = time.monotonic()
    report: dict[str, float] = {"retried_batches": 0, "durability_errors": 0}
    killed: dict[str, float] = {}

    async def fail_over() -> None:
        if how == "kill":
            address = topology.kill_master()
        else:
            address = topology.master_address()
            with topology.sentinels[0].client() as sentinel:
                sentinel.execute_command("SENTINEL", "FAILOVER", topology.service_name)
        killed["ms"] = time.time() * 1000
        killed["at"] = time.monotonic()
        await anyio.to_thread.run_sync(
            lambda: topology.wait_for_failover(timeout=30, old=address))
        report["failover_s"] = time.monotonic() - killed["at"]
        if how == "kill":
            # Back as an (empty) master; Sentinel converts it into a replica of the new
            # master, after which WAIT 1 confirms adds again.
            await anyio.to_thread.run_sync(topology.process_at(address).start)

    async with Queue(queue_name, settings=settings, durability="replicated") as queue:
        async with anyio.create_task_group() as tg:
            for start in range(0, total, BATCH):
                if start == total // 4 // BATCH * BATCH:
                    tg.start_soon(fail_over)
                batch = [JobSpec("record", {"n": i}, job_id=f"evt-{i}")
                         for i in range(start, start + BATCH)]
                await _add_until_confirmed(queue, batch, report)
        report["adds_s"] = time.monotonic() - started

        async def all_processed() -> bool:
            return int(await recorder.llen(f"{queue_name}:processed")) >= total and len(
                set(await recorder.lrange(f"{queue_name}:processed", 0, -1))) >= total

        deadline = time.monotonic() + 45
        while not await all_processed():
            for proc in workers:
                assert proc.poll() is None, f"worker exited with code {proc.returncode}"
            assert time.monotonic() < deadline, "not every job was processed within 45s"
            await anyio.sleep(0.2)
        for proc in workers:
            assert proc.poll() is None, f"worker exited with code {proc.returncode}"

        # The first completion written to the new master's `done` stream after the kill.
        first = await queue.client.xrange(queue.keys.done, min=str(int(killed["ms"])), count=1)
        assert first, "no completion recorded on the new master"
        first_ms = int(first[0][0].decode().partition("-")[0])
        report["first_completion_s"] = (first_ms - killed["ms"]) / 1000
        report["total_s"] = time.monotonic() - started
    return report


async def _add_until_confirmed(queue: Queue, batch: list[JobSpec],
                               report: dict[str, float]) -> None:
    """add_bulk with durability="replicated", again with the same ids until confirmed."""
    delay = 0.05
    deadline = time.monotonic() + 40
    while True:
        try:
            await queue.add_bulk(batch)
            return
        except (RedisConnectionError, RedisTimeoutError, DurabilityError) as exc:
            if time.monotonic() > deadline:
                raise
            report["retried_batches"] += 1
            if isinstance(exc, DurabilityError):
                report["durability_errors"] += 1
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

