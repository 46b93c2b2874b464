"""Events and metrics of a partitioned queue on a real Redis Cluster (3 masters): the partitions'
events streams live in other slots on other nodes, so QueueEvents reads each one (a pipeline
of non-blocking reads, then a blocking read per partition, the first to answer wins)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator

import anyio
import pytest
import redis
from redis.crc import key_slot

from streamflow import Discard, Job, JobSpec, Queue, QueueEvents, StreamflowSettings, Worker
from streamflow.events import QueueEvent, id_key
from streamflow.partitions import partition_for
from tests.servers import ClusterTopology
from tests.support import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]

PARTITIONS = 6


def cluster_settings(cluster: ClusterTopology) -> StreamflowSettings:
    settings = StreamflowSettings.from_url(cluster.url)
    settings.redis.cluster = True
    settings.worker.block_ms = 200
    settings.worker.promote_interval = 0.05
    settings.worker.heartbeat_interval = 0.5
    settings.queue.backoff_delay = 0.05
    settings.queue.attempts = 1
    settings.queue.metrics_window = 3600
    settings.queue.events = "all"  # an added event per job
    return settings


def keyed(count: int, start: int = 0) -> list[JobSpec]:
    return [JobSpec("pay", i, job_id=f"evt_{i}", key=f"pay_{i}")
            for i in range(start, start + count)]


async def stored_events(q: Queue) -> list[tuple[int, str]]:
    out = []
    for i, keys in enumerate(q.partition_keys):
        out += [(i, entry.decode()) for entry, _ in await q.client.xrange(keys.events)]
    return out


def in_stream_order(events: list[QueueEvent]) -> bool:
    last: dict[int | None, tuple[int, int]] = {}
    for event in events:
        if last.get(event.partition, (-1, -1)) >= id_key(event.id):
            return False
        last[event.partition] = id_key(event.id)
    return True


async def test_events_of_every_partition_arrive_from_every_master(
        cluster_topology: ClusterTopology, queue_name: str) -> None:
    settings = cluster_settings(cluster_topology)
    seen: list[QueueEvent] = []

    async def handler(job: Job) -> None:
        if job.data % 10 == 0:
            raise Discard("bad")

    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q, \
            QueueEvents(queue_name, settings=settings, block_ms=500) as events:
        with redis.RedisCluster(host=cluster_topology.nodes[0].host,
                                port=cluster_topology.nodes[0].port) as sync:
            masters = {sync.get_node_from_key(stream).port for _, stream in events.streams}
        assert len(masters) == 3, "the partitions' events streams sit on every master"
        await q.add_bulk(keyed(60))
        worker = Worker(queue_name, handler, settings=settings, concurrency=8)
        async with running(worker):
            with anyio.fail_after(30):
                async for event in events:
                    seen.append(event)
                    if sum(e.name in ("completed", "dead") for e in seen) == 60:
                        break
        finished = {e.job_id: (e.name, e.partition) for e in seen
                    if e.name in ("completed", "dead")}
        assert finished == {f"evt_{i}": ("dead" if i % 10 == 0 else "completed",
                                         partition_for(f"pay_{i}", PARTITIONS))
                            for i in range(60)}
        assert in_stream_order(seen)
        assert sorted((e.partition, e.id) for e in seen) == sorted(await stored_events(q))

        minutes = await q.metrics(since=600)  # the stored per-minute counts, summed
        assert sum(m.completed for m in minutes) == 54 == worker.processed
        assert sum(m.failed for m in minutes) == 6
        per_partition = Counter(partition_for(f"pay_{i}", PARTITIONS) for i in range(60))
        for i in range(PARTITIONS):
            own = await q.partition(i).metrics(since=600)
            assert sum(m.completed + m.failed for m in own) == per_partition[i]
        await q.obliterate(force=True)


async def test_a_resumed_reader_misses_nothing_and_repeats_nothing(
        cluster_topology: ClusterTopology, queue_name: str) -> None:
    settings = cluster_settings(cluster_topology)
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
        await q.add_bulk(keyed(40))
        got: list[QueueEvent] = []
        cursor = "0"
        for _ in range(4):  # stop after 7, 20, 21 and 30 events
            async with QueueEvents(queue_name, settings=settings, since=cursor) as events:
                with anyio.fail_after(10):
                    async for event in events:
                        got.append(event)
                        if len(got) in (7, 20, 21, 30):
                            break
                cursor = events.last_id
            if len(got) == 21:
                await q.add_bulk(keyed(40, start=40))
        async with QueueEvents(queue_name, settings=settings, since=cursor) as events:
            got += await events.read(count=1000, block_ms=None)
            assert await events.read(block_ms=None) == []
        ids = [(e.partition, e.id) for e in got]
        assert len(ids) == len(set(ids)) == 80
        assert sorted(ids) == sorted(await stored_events(q))
        assert in_stream_order(got)
        await q.obliterate(force=True)


async def test_a_blocked_read_wakes_on_any_partition_and_the_client_stays_sound(
        cluster_topology: ClusterTopology, queue_name: str) -> None:
    """Each round blocks on every partition; the losers are cancelled (their connections
    closed): the next rounds' replies must still be their own."""
    settings = cluster_settings(cluster_topology)
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q, \
            QueueEvents(queue_name, settings=settings) as events:
        async def read(into: list[QueueEvent]) -> None:
            into.extend(await events.read(block_ms=4000))

        for i in range(PARTITIONS * 2):
            got: list[QueueEvent] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(read, got)
                await anyio.sleep(0.05)
                await q.add("pay", i, job_id=f"evt_{i}", key=f"pay_{i}")
            assert [(e.name, e.job_id, e.partition) for e in got] == [
                ("added", f"evt_{i}", partition_for(f"pay_{i}", PARTITIONS))]
        await q.obliterate(force=True)


@pytest.fixture
def cluster_ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    """A fresh 3-master, 3-replica cluster (the failover changes it)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    with ClusterTopology(tmp_path_factory.mktemp("cluster-ha"), replicas=1,
                         node_timeout_ms=1000) as topology:
        yield topology


@pytest.mark.slow
async def test_a_follower_goes_on_after_a_master_fails_over(cluster_ha: ClusterTopology,
                                                           queue_name: str) -> None:
    settings = cluster_settings(cluster_ha)
    settings.redis.retry_attempts = 20
    seen: list[QueueEvent] = []

    def replicated() -> None:
        for node in cluster_ha.masters_now():
            with node.client() as client:
                assert client.execute_command("WAIT", 1, 5000) >= 1

    def jobs_seen(start: int, stop: int) -> bool:
        return {f"evt_{i}" for i in range(start, stop)} <= {e.job_id for e in seen}

    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q, \
            QueueEvents(queue_name, settings=settings, block_ms=300) as events:
        async def follow() -> None:
            async for event in events:
                seen.append(event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await q.add_bulk(keyed(60))
            await anyio.to_thread.run_sync(replicated)
            await wait_until(lambda: jobs_seen(0, 60))
            victim = cluster_ha.owner_of(key_slot(q.partition_keys[0].events.encode()))
            cluster_ha.kill_master(victim)
            await anyio.to_thread.run_sync(cluster_ha.wait_for_failover, 30.0)
            await q.add_bulk(keyed(60, start=60))
            await wait_until(lambda: jobs_seen(60, 120), timeout=40)
            tg.cancel_scope.cancel()
    ids = [(e.partition, e.id) for e in seen]
    assert len(ids) == len(set(ids)) == 120, "none twice, none missed"
    assert in_stream_order(seen)
