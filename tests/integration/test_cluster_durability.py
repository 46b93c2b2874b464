"""``durability="replicated"`` on Redis Cluster: an add is confirmed only when a replica of the
master that holds it has it.

WAIT counts the replicas that reached the offset of the connection it is sent on, so it must
travel on the connection (and node) that carried the write; sent to another node, or on
another connection, it confirms writes no replica has.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator

import pytest

from streamflow import JobSpec, Queue, StreamflowSettings
from streamflow.errors import DurabilityError
from tests.servers import ClusterTopology

pytestmark = [pytest.mark.anyio, pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    with ClusterTopology(tmp_path_factory.mktemp("cluster-durable"), replicas=1,
                         node_timeout_ms=15000) as topology:
        yield topology


def _signal_replicas(topology: ClusterTopology, sig: signal.Signals) -> None:
    for replica in topology.replica_nodes:
        os.kill(replica._process.pid, sig)


@pytest.mark.parametrize(("partitions", "ordered"), [(1, False), (3, False), (3, True)])
async def test_no_add_is_confirmed_while_the_replicas_are_stopped(
        replicated_cluster: ClusterTopology, queue_name: str, partitions: int,
        ordered: bool) -> None:
    settings = StreamflowSettings.from_url(replicated_cluster.url)
    settings.redis.cluster = True
    settings.queue.partitions = partitions
    settings.queue.replicated_timeout = 0.3
    settings.queue.ordered = ordered
    async with Queue(queue_name, settings=settings, durability="replicated") as q:
        await _confirmed(q, "before")  # replicas running: confirmed
        _signal_replicas(replicated_cluster, signal.SIGSTOP)
        try:
            confirmed = []
            for i in range(6):
                with contextlib.suppress(DurabilityError):
                    confirmed.append(await q.add("j", {}, job_id=f"single-{i}"))
            with contextlib.suppress(DurabilityError):
                confirmed.append(await q.add_bulk([JobSpec("j", i, key=f"k{i}")
                                                   for i in range(30)]))
        finally:
            _signal_replicas(replicated_cluster, signal.SIGCONT)
        assert confirmed == []  # before: the first add(s) confirmed by a WAIT on another node
        await _confirmed(q, "after")


async def _confirmed(q: Queue, job_id: str) -> None:
    """An add retried (same id) until a replica confirms it: a replica just resumed may take
    longer than the 0.3 s to catch up."""
    for _ in range(30):
        with contextlib.suppress(DurabilityError):
            await q.add("j", {}, job_id=job_id)
            return
    raise AssertionError(f"{job_id}: never confirmed with the replicas running")
