"""Redis Cluster: every key of a queue shares the {queue} hash tag, so scripts and pipelines
run on one shard; different queues spread over the shards."""

from __future__ import annotations

import pytest

from streamflow import Discard, Job, Queue, StreamflowSettings, Worker
from tests.servers import ClusterTopology
from tests.support import running, wait_until

pytestmark = pytest.mark.anyio


def cluster_settings(cluster: ClusterTopology) -> StreamflowSettings:
    settings = StreamflowSettings.from_url(cluster.url)
    settings.redis.cluster = True
    settings.worker.block_ms = 200
    settings.worker.promote_interval = 0.05
    settings.queue.backoff_delay = 0.05
    return settings


async def test_a_queue_runs_on_a_cluster(cluster_topology: ClusterTopology,
                                         queue_name: str) -> None:
    settings = cluster_settings(cluster_topology)
    done: list[str] = []

    async def handler(job: Job) -> None:
        if job.name == "poison":
            raise Discard("bad")
        if job.name == "flaky" and job.attempt == 1:
            raise RuntimeError("once")
        done.append(job.id)

    async with Queue(queue_name, settings=settings) as q:
        ids = await q.add_bulk([("j", i) for i in range(50)])
        await q.add("flaky", {}, job_id="evt_flaky")
        assert await q.add("flaky", {}, job_id="evt_flaky") is None
        await q.add("later", {}, delay=0.2, priority="high")
        await q.add("poison", {})
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: len(done) == 52)
            await wait_until(lambda: _settled(q))
        assert set(ids) <= set(done) and "evt_flaky" in done
        counts = await q.counts()
        assert counts["dead"] == 1 and counts["delayed"] == 0
        assert (await q.get_job("evt_flaky"))["state"] == "completed"  # type: ignore[index]
        assert await q.obliterate(force=True) > 0


async def _settled(q: Queue) -> bool:
    counts = await q.counts()
    return counts["pending"] == 0 and counts["waiting"] == 0 and counts["dead"] == 1
