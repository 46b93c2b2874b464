"""Enqueue-to-start latency at light load: one job per millisecond, timestamps in the payload.

    python -m benchmarks.latency URL [--seconds 3]

The worker runs in a child process (as in production); the handler records
``time.time_ns() - payload.ts`` and the parent reads the samples back from Redis.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import anyio
import orjson

from benchmarks.common import emit, percentile
from streamflow import Job, Queue, StreamflowSettings, Worker

QUEUE = "latency"


async def worker_main(url: str, prefix: str, expected: int) -> None:
    settings = StreamflowSettings.from_url(url, prefix=prefix)
    samples: list[int] = []
    done = anyio.Event()

    async def record(job: Job) -> None:
        samples.append(time.time_ns() - job.data["ts"])
        if len(samples) == expected:
            done.set()

    worker = Worker(QUEUE, record, settings=settings, concurrency=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(handle_signals=False))
        await done.wait()
        await worker.close()
        await worker_client_push(url, prefix, samples)


async def worker_client_push(url: str, prefix: str, samples: list[int]) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    await client.set(f"{prefix}:latency-samples", orjson.dumps(samples))
    await client.aclose()


async def main(url: str, seconds: float) -> None:
    prefix = f"bench{os.getpid()}"
    jobs = int(seconds * 1000)
    settings = StreamflowSettings.from_url(url, prefix=prefix)
    async with Queue(QUEUE, settings=settings) as q:
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.latency", url, "--worker",
                                  "--prefix", prefix, "--expected", str(jobs)])
        await anyio.sleep(1.0)  # let the worker start and block on XREADGROUP
        start = time.perf_counter()
        for i in range(jobs):
            await q.add("tick", {"ts": time.time_ns()})
            next_at = start + (i + 1) / 1000
            delay = next_at - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
        while child.poll() is None:
            await anyio.sleep(0.05)
        raw = await q.client.get(f"{prefix}:latency-samples")
        samples = [ns / 1e6 for ns in orjson.loads(raw)]
        await q.client.delete(*q.keys.streams, q.keys.events, q.keys.done, q.keys.workers,
                              f"{prefix}:latency-samples")
    emit({"jobs": len(samples), "p50_ms": percentile(samples, 50),
          "p99_ms": percentile(samples, 99), "max_ms": max(samples)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--expected", type=int, default=0)
    args = parser.parse_args()
    if args.worker:
        anyio.run(worker_main, args.url, args.prefix, args.expected)
    else:
        anyio.run(main, args.url, args.seconds)
