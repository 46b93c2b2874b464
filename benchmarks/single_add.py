"""Single adds as a webhook producer makes them: ``Queue.add`` from many concurrent callers.

    python -m benchmarks.single_add URL [--adds 10000] [--callers 200] [--job-ids]

``--callers`` coroutines of this one process each call ``q.add("noop", PAYLOAD)`` in a loop
until ``--adds`` calls were made (closed loop). Reports adds/s, the latency of each call
(p50/p99, from the call to its answer), the Redis CPU per add (``INFO cpu`` of the server,
user + sys, before and after: the server must be private), this process's CPU per add and
how many adds a script call carried on average.
``--job-ids`` gives every add a caller-given id (the dedup path).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any

import anyio
import psutil

from benchmarks.common import PAYLOAD, emit, percentile, redis_cpu_s
from streamflow import Queue, StreamflowSettings


async def main(url: str, adds: int, callers: int, job_ids: bool, events: str) -> None:
    settings = StreamflowSettings.from_url(url, prefix=f"bench{os.getpid()}")
    settings.queue.events = events  # type: ignore[assignment]
    latencies: list[float] = []
    tag = uuid.uuid4().hex[:8]
    async with Queue("single", settings=settings) as q:
        for i in range(200):  # warm up: connections open, scripts loaded
            await q.add("noop", PAYLOAD, job_id=f"warm-{tag}-{i}" if job_ids else None)
        remaining = adds
        process = psutil.Process()

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                job_id = f"{tag}-{remaining}" if job_ids else None
                start = time.perf_counter()
                await q.add("noop", PAYLOAD, job_id=job_id)
                latencies.append(time.perf_counter() - start)

        coalescers = q._enqueuer._coalescers.values()
        sends_before = sum(c.sends for c in coalescers)
        cpu_before = await redis_cpu_s(q.client)
        own_before = process.cpu_times()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(callers):
                tg.start_soon(caller)
        seconds = time.perf_counter() - start
        own_after = process.cpu_times()
        cpu_after = await redis_cpu_s(q.client)
        sends = sum(c.sends for c in coalescers) - sends_before
        await q.obliterate(force=True)
    own = (own_after.user - own_before.user) + (own_after.system - own_before.system)
    ms = [s * 1000 for s in latencies]
    emit({"adds": len(latencies), "callers": callers, "adds_per_s": len(latencies) / seconds,
          "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
          "redis_cpu_us_per_add": (cpu_after - cpu_before) / len(latencies) * 1e6,
          "client_cpu_us_per_add": own / len(latencies) * 1e6,
          "adds_per_send": len(latencies) / max(sends, 1)})


def parse(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--adds", type=int, default=10_000)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--job-ids", action="store_true")
    parser.add_argument("--events", choices=["all", "failures", "none"], default="all")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    anyio.run(main, args.url, args.adds, args.callers, args.job_ids, args.events)
