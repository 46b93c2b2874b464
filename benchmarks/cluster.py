"""A partitioned queue on a local Redis Cluster of 1 and of 3 masters: jobs/s and the Redis CPU
each shard spent (``INFO cpu``, ``INFO commandstats``), to show the work spreads evenly.

    python -m benchmarks.cluster [--jobs 60000] [--partitions 6] [--masters 1,3]
                                 [--workers 2] [--concurrency 100] [--no-place]

Each run starts a fresh cluster (masters only) on loopback ports, enqueues ``--jobs`` jobs with
distinct keys into a queue of ``--partitions`` partitions, then runs ``--workers`` worker
processes until all are done. Before enqueueing, the slot of partition i is moved to master
i mod M (``--no-place`` leaves them where the hash tags fall). Reported per shard: how many
partitions it holds, the Redis CPU seconds it used during processing, and its share of all
shards' CPU. On a machine with fewer cores than masters + workers the absolute jobs/s is
capped by the machine, not by Redis; the per-shard split is the figure that carries over to
N masters on N machines.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import redis

from benchmarks.common import PAYLOAD, emit
from streamflow import Job, JobSpec, Queue, StreamflowSettings, Worker
from tests.servers import ClusterTopology

QUEUE = "cluster-bench"


def settings_for(url: str, partitions: int) -> StreamflowSettings:
    settings = StreamflowSettings.from_url(url, prefix="bench")
    settings.redis.cluster = True
    settings.queue.partitions = partitions
    settings.queue.events = "none"
    settings.queue.remove_on_complete = 0
    return settings


def shard_cpu(topology: ClusterTopology) -> dict[int, tuple[float, int]]:
    """Per master port: (Redis CPU seconds so far, commands processed so far)."""
    out: dict[int, tuple[float, int]] = {}
    for node in topology.nodes:
        with redis.Redis(host=node.host, port=node.port) as client:
            cpu = client.info("cpu")
            stats = client.info("commandstats")
        calls = sum(int(value["calls"]) for value in stats.values())
        out[node.port] = (float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls)
    return out


def partitions_per_shard(topology: ClusterTopology, partitions: int) -> dict[int, int]:
    from streamflow.keys import QueueKeys

    counts = {node.port: 0 for node in topology.nodes}
    with redis.cluster.RedisCluster(host=topology.nodes[0].host,
                                    port=topology.nodes[0].port) as client:
        for partition in range(partitions):
            key = QueueKeys(QUEUE, "bench", partition=partition).meta
            counts[int(client.get_node_from_key(key).port)] += 1
    return counts


def place_partitions(topology: ClusterTopology, partitions: int) -> None:
    """Move the (still empty) slot of partition i to master i mod M: hash tags alone land
    unevenly (6 partitions of this queue fall 1/1/4 on 3 masters); docs/benchmarks.md."""
    from redis.crc import key_slot

    from streamflow.keys import QueueKeys

    for partition in range(partitions):
        slot = key_slot(QueueKeys(QUEUE, "bench", partition=partition).meta.encode())
        topology.migrate_slot(slot, topology.nodes[partition % len(topology.nodes)])


def worker_process(url: str, partitions: int, concurrency: int, stop_at: int,
                   done: Any) -> None:
    async def handler(job: Job) -> None:
        with done.get_lock():
            done.value += 1

    async def main() -> None:
        worker = Worker(QUEUE, handler, settings=settings_for(url, partitions),
                        concurrency=concurrency)

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            while done.value < stop_at:
                await anyio.sleep(0.05)
            await worker.close()

    anyio.run(main)


async def enqueue(url: str, partitions: int, jobs: int) -> float:
    async with Queue(QUEUE, settings=settings_for(url, partitions)) as q:
        start = time.perf_counter()
        for offset in range(0, jobs, 10_000):
            await q.add_bulk([JobSpec("noop", PAYLOAD, key=f"pay_{offset + i}")
                              for i in range(min(10_000, jobs - offset))])
        return jobs / (time.perf_counter() - start)


def run_once(masters: int, jobs: int, partitions: int, workers: int,
             concurrency: int, place: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, \
            ClusterTopology(Path(folder), masters=masters) as topology:
        url = topology.url
        if place:
            place_partitions(topology, partitions)
        enqueue_per_s = anyio.run(enqueue, url, partitions, jobs)
        done = multiprocessing.Value("q", 0)
        before = shard_cpu(topology)
        start = time.perf_counter()
        processes = [multiprocessing.Process(
            target=worker_process, args=(url, partitions, concurrency, jobs, done))
            for _ in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(600)
        elapsed = time.perf_counter() - start
        after = shard_cpu(topology)
        held = partitions_per_shard(topology, partitions)
    cpu = {port: after[port][0] - before[port][0] for port in after}
    total_cpu = sum(cpu.values()) or 1.0
    shards = [{"partitions": held[port], "redis_cpu_s": round(cpu[port], 2),
               "cpu_share": round(cpu[port] / total_cpu, 3),
               "commands": after[port][1] - before[port][1]} for port in sorted(cpu)]
    return {"masters": masters, "partitions": partitions, "placed": place, "jobs": jobs,
            "workers": workers,
            "enqueue_per_s": round(enqueue_per_s), "process_per_s": round(jobs / elapsed),
            "processed": done.value, "shards": shards}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--masters", default="1,3")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--no-place", action="store_true",
                        help="Leave partitions where their hash tags fall.")
    args = parser.parse_args()
    os.environ.setdefault("STREAMFLOW_TEST_DOCKER", "0")
    for masters in (int(m) for m in args.masters.split(",")):
        emit(run_once(masters, args.jobs, args.partitions, args.workers, args.concurrency,
                      not args.no_place))


if __name__ == "__main__":
    main()
