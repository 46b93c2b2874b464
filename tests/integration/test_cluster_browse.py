"""Finding and steering jobs of a partitioned queue on a real Redis Cluster (3 masters): the
partitions sit on different shards; a job is found by id, listed in a merged page, retried
and removed on the shard of its partition; the dashboard's discovery lists the queue once."""

from __future__ import annotations

import pytest

from streamflow import Discard, Job, JobSpec, Queue, Worker
from streamflow.discovery import known_queues
from streamflow.partitions import partition_for
from tests.integration.test_cluster import cluster_settings
from tests.servers import ClusterTopology
from tests.support import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]
PARTS = 6


async def test_find_by_id_and_retry_on_a_cluster(cluster_topology: ClusterTopology,
                                                 queue_name: str) -> None:
    settings = cluster_settings(cluster_topology)

    async def handler(job: Job) -> str:
        if job.data.get("bad"):
            raise Discard("provider refused")
        return "ok"

    async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
        nodes = {q.client.get_node_from_key(q.partition(i).keys.delayed).port
                 for i in range(PARTS)}
        assert len(nodes) > 1, "the partitions are on several shards"
        await q.add_bulk([JobSpec("pay", {"bad": True}, job_id=f"evt_{i}", attempts=1)
                          for i in range(12)])
        async with running(Worker(queue_name, handler, settings=settings, concurrency=4)):
            await wait_until(lambda: _dead_count(q, 12))
        homes = {partition_for(f"evt_{i}", PARTS) for i in range(12)}
        assert len(homes) > 1
        for i in range(12):
            view = await q.job(f"evt_{i}")
            assert view is not None and view.state == "dead"
            assert view.partition == partition_for(f"evt_{i}", PARTS)
        page, cursor, seen = None, None, []
        while page is None or cursor is not None:
            page = await q.jobs("dead", limit=5, cursor=cursor)
            seen += [v.id for v in page.jobs]
            cursor = page.next_cursor
        assert sorted(seen) == sorted(f"evt_{i}" for i in range(12))

        assert await q.retry("evt_3", data={"bad": False}) == "evt_3"
        await q.remove("evt_4")
        async with running(Worker(queue_name, handler, settings=settings, concurrency=4)):
            await wait_until(lambda: _completed(q, "evt_3"))
        assert (await q.counts())["dead"] == 11  # evt_3's original dead letter is kept
        await q.obliterate(force=True)


async def _dead_count(q: Queue, expected: int) -> bool:
    return (await q.counts())["dead"] == expected


async def _completed(q: Queue, job_id: str) -> bool:
    view = await q.job(job_id)
    return view is not None and view.state == "completed"


async def test_a_partitioned_queue_is_discovered_once_on_a_cluster(
        cluster_topology: ClusterTopology, queue_name: str) -> None:
    settings = cluster_settings(cluster_topology)
    settings.prefix = f"cd{queue_name[-8:]}"
    async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
        await q.add_bulk([JobSpec("a", i, job_id=f"e{i}") for i in range(30)])
        assert await known_queues(q.client, settings.prefix) == [queue_name]
        await q.obliterate(force=True)
