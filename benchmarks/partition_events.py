"""Following the events of a queue of 1 and of N partitions on a local Redis Cluster (3 masters):
what a follower pays for reading one stream per partition.

    python -m benchmarks.partition_events [--partitions 6] [--rounds 100] [--backlog 5000]
                                          [--runs 2]

Per queue: ``--rounds`` times a ``read(block_ms=4000)`` blocks on every partition, one job is
added, and the time from the add to the read's return is taken (p50, p90), with the
connections the cluster accepted per wake (the blocked reads of the other partitions are
cancelled, and their connections redialled). Then ``--backlog`` events are read back with
``read(count=100)`` and with ``async for``. Runs alternate the plain and the partitioned
queue on one cluster; on a busy machine only the side-by-side figures mean anything.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import anyio
import redis

from streamflow import Queue, QueueEvents, StreamflowSettings
from tests.servers import ClusterTopology


def _accepted(topology: ClusterTopology) -> int:
    total = 0
    for node in topology.nodes:
        with redis.Redis(host=node.host, port=node.port) as client:
            total += int(client.info("stats")["total_connections_received"]) - 1  # this one
    return total


async def _one(topology: ClusterTopology, name: str, partitions: int, rounds: int,
               backlog: int) -> list[str]:
    settings = StreamflowSettings.from_url(topology.url)
    settings.redis.cluster = True
    latencies: list[float] = []
    async with Queue(name, settings=settings, partitions=partitions) as q, \
            QueueEvents(name, settings=settings) as events:
        await events.read(block_ms=None)
        before = _accepted(topology)
        for i in range(rounds):
            got: list[object] = []

            async def read(into: list[object]) -> None:
                into.extend(await events.read(block_ms=4000))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read, got)
                await anyio.sleep(0.02)
                start = time.perf_counter()
                await q.add("x", i, key=f"k{i}")
            latencies.append(time.perf_counter() - start)
            assert len(got) == 1, got
        per_wake = (_accepted(topology) - before) / rounds
        await q.add_bulk([("x", i) for i in range(backlog)])
        start, seen = time.perf_counter(), 0
        while seen < backlog:
            seen += len(await events.read(count=100, block_ms=1000))
        by_read = backlog / (time.perf_counter() - start)
        await q.add_bulk([("x", i) for i in range(backlog)])
        start, seen = time.perf_counter(), 0
        async for _ in events:
            seen += 1
            if seen == backlog:
                break
        by_iteration = backlog / (time.perf_counter() - start)
        await q.obliterate(force=True)
    latencies.sort()
    return [str(partitions), f"{latencies[len(latencies) // 2] * 1000:.2f}",
            f"{latencies[int(len(latencies) * 0.9)] * 1000:.2f}", f"{per_wake:.1f}",
            f"{by_read:,.0f}", f"{by_iteration:,.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("STREAMFLOW_TEST_DOCKER", "0")
    print("| partitions | add->event p50 ms | p90 ms | connections per wake "
          "| backlog events/s, read(count=100) | backlog events/s, async for |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder, ClusterTopology(Path(folder)) as topology:
        for run in range(args.runs):
            for partitions in (1, args.partitions):
                row = anyio.run(_one, topology, f"bench-events-{run}-{partitions}",
                                partitions, args.rounds, args.backlog)
                print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
