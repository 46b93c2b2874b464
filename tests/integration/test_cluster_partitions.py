"""Partitioned queues on a real Redis Cluster: 3 masters + 3 replicas on loopback.

Partitions spread over every master; 30k keyed jobs run with none lost and per-key order
intact; a master killed mid-run fails over to its replica and nothing is lost; a slot moved
while workers run (ASK/TRYAGAIN during the move, MOVED after) loses nothing.
"""

from __future__ import annotations

import functools
import random
import shutil
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis

from streamflow import Job, JobSpec, Queue, StreamflowSettings, Worker
from tests.servers import ClusterTopology
from tests.support import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def cluster_ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    """A fresh 3-master, 3-replica cluster per test (failover and resharding change it)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    with ClusterTopology(tmp_path_factory.mktemp("cluster-ha"), replicas=1,
                         node_timeout_ms=1000) as topology:
        yield topology


def cluster_settings(topology: ClusterTopology, partitions: int) -> StreamflowSettings:
    settings = StreamflowSettings.from_url(topology.url)
    settings.redis.cluster = True
    settings.redis.retry_attempts = 20
    settings.queue.partitions = partitions
    settings.queue.events = "failures"
    settings.queue.backoff_delay = 0.05
    settings.worker.block_ms = 200
    settings.worker.promote_interval = 0.05
    settings.worker.heartbeat_interval = 0.5
    settings.worker.stalled_interval = 2.0
    settings.worker.shutdown_grace = 5
    return settings


def _masters_of(topology: ClusterTopology, keys: list[str]) -> set[int]:
    with redis.RedisCluster(host=topology.nodes[0].host, port=topology.nodes[0].port) as client:
        return {int(client.get_node_from_key(key).port) for key in keys}


def _replicated(topology: ClusterTopology) -> None:
    """Wait until every master's writes reached its replica (WAIT 1)."""
    for node in topology.masters_now():
        with node.client() as client:
            assert client.execute_command("WAIT", 1, 5000) >= 1


async def test_a_partitioned_queue_spreads_over_every_master(cluster_ha: ClusterTopology,
                                                            queue_name: str) -> None:
    settings = cluster_settings(cluster_ha, partitions=6)
    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([JobSpec("j", i, key=f"pay_{i}") for i in range(600)])
        streams = [keys.level("normal") for keys in q.partition_keys]
        assert len(_masters_of(cluster_ha, streams)) == 3
        for node in cluster_ha.nodes:
            with node.client() as client:
                assert any(b"#" in key for key in client.keys(f"sf:{{{queue_name}#*")), node
        assert (await q.counts())["waiting"] == 600


async def test_30k_keyed_jobs_none_lost_and_per_key_order_intact(cluster_ha: ClusterTopology,
                                                                queue_name: str) -> None:
    settings = cluster_settings(cluster_ha, partitions=6)
    keys, per_key = 3000, 10
    last: dict[int, int] = {}
    active: set[int] = set()
    violations: list[Any] = []

    async def handler(job: Job) -> None:
        key, seq = job.data
        if key in active:
            violations.append(("two at once", key, seq))
        active.add(key)
        if random.random() < 0.5:
            await anyio.lowlevel.checkpoint()
        if last.get(key, -1) != seq - 1:
            violations.append(("out of order", key, last.get(key), seq))
        last[key] = seq
        active.discard(key)

    async with Queue(queue_name, settings=settings, ordered=True) as q:
        specs = [JobSpec("pay", [k, s], key=f"pay_{k}") for s in range(per_key)
                 for k in range(keys)]
        for start in range(0, len(specs), 10_000):
            await q.add_bulk(specs[start:start + 10_000])
        workers = [Worker(queue_name, handler, settings=settings, concurrency=100)
                   for _ in range(2)]
        async with running(*workers):
            await wait_until(lambda: len(last) == keys and all(
                seq == per_key - 1 for seq in last.values()), timeout=45)
        assert violations == []
        counts = await q.counts()
        assert counts["waiting"] == counts["pending"] == counts["dead"] == 0


async def test_a_master_killed_mid_run_fails_over_and_nothing_is_lost(
        cluster_ha: ClusterTopology, queue_name: str) -> None:
    settings = cluster_settings(cluster_ha, partitions=6)
    seen: set[int] = set()
    total = 6000

    async def handler(job: Job) -> None:
        seen.add(job.data)
        await anyio.sleep(0.001)

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(total)])
        await anyio.to_thread.run_sync(_replicated, cluster_ha)
        worker = Worker(queue_name, handler, settings=settings, concurrency=50)
        async with running(worker):
            await wait_until(lambda: len(seen) > total // 4)
            victim = cluster_ha.owner_of(_slot(q.partition_keys[0].meta))
            cluster_ha.kill_master(victim)
            await anyio.to_thread.run_sync(cluster_ha.wait_for_failover, 30.0)
            await wait_until(lambda: len(seen) == total, timeout=40)
        assert seen == set(range(total))


async def test_resharding_a_slot_while_workers_run_loses_nothing(
        cluster_ha: ClusterTopology, queue_name: str) -> None:
    settings = cluster_settings(cluster_ha, partitions=3)
    seen: set[int] = set()
    total = 6000

    async def handler(job: Job) -> None:
        seen.add(job.data)
        await anyio.sleep(0.001)

    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(total)])
        slot = _slot(q.partition_keys[1].meta)
        source = cluster_ha.owner_of(slot)
        target = next(node for node in cluster_ha.nodes if node is not source)
        worker = Worker(queue_name, handler, settings=settings, concurrency=50)
        async with running(worker):
            await wait_until(lambda: len(seen) > total // 5)
            pause = functools.partial(anyio.from_thread.run, anyio.sleep, 0.05)
            moved = await anyio.to_thread.run_sync(
                functools.partial(cluster_ha.migrate_slot, slot, target, batch=2,
                                  between=pause))
            assert moved > 2
            assert cluster_ha.owner_of(slot) is target
            await wait_until(lambda: len(seen) == total, timeout=40)
        assert seen == set(range(total))
        await q.add("after", -1, key="k1")  # MOVED: the client follows the slot


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))
