"""``migrate_partitions`` on a real Redis Cluster: partitions on other slots and masters
(cross-slot moves, DUMP/RESTORE, pipelines over several nodes)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from streamflow import Job, JobSpec, Queue, Worker
from streamflow.queue.migrate import migrate_partitions
from tests.integration.test_cluster import cluster_settings
from tests.integration.test_migrate_partitions import KeyOrder
from tests.servers import ClusterTopology
from tests.support import running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.cluster]


async def test_an_ordered_queue_migrates_from_4_to_6_partitions_on_a_cluster(
        cluster_topology: ClusterTopology, queue_name: str) -> None:
    settings = cluster_settings(cluster_topology)
    settings.worker.heartbeat_interval = 0.5
    ran: list[Any] = []
    order = KeyOrder()

    async def handler(job: Job) -> None:
        key, seq = job.data
        order.saw(key, seq)
        ran.append((key, seq))

    specs = [JobSpec("k", [f"pay_{i % 40}", i // 40], key=f"pay_{i % 40}", job_id=f"e{i}")
             for i in range(400)]
    specs += [JobSpec("k", [f"late_{i}", 0], key=f"late_{i}", job_id=f"l{i}", delay=0.3)
              for i in range(20)]
    async with Queue(queue_name, settings=settings, partitions=4, ordered=True) as q:
        await q.add_bulk(specs)
        report = await migrate_partitions(q, 6)
        assert report.keys > 0 and report.held > 0, "some keys changed partition"
    async with Queue(queue_name, settings=settings, ordered=True) as q:
        assert q.partitions == 6
        counts = await q.counts()
        assert counts["waiting"] + counts["held"] + counts["delayed"] == len(specs)
        again = await q.add_bulk([JobSpec(s.name, s.data, key=s.key, job_id=s.job_id)
                                  for s in specs])
        assert again == [None] * len(specs)
        async with running(Worker(queue_name, handler, settings=settings, concurrency=32)):
            await wait_until(lambda: len(ran) >= len(specs), timeout=30)
        assert order.violations == []
        assert Counter(ran) == Counter(tuple(s.data) for s in specs)
        await q.obliterate(force=True)
