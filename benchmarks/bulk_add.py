"""What one ``add_bulk`` costs per job: the producer's CPU, Redis's CPU and the wall rate.

    python -m benchmarks.bulk_add URL [--jobs 20000] [--calls 7] [--events all|outcomes|...]

Each call adds ``--jobs`` ``("noop", payload)`` pairs (a fresh ~100 B dict each, as
``benchmarks.peers`` (a) does); the pairs are built outside the measured time. ``python_cpu``
is this process's CPU time (``time.process_time``), ``redis_cpu`` the server's (INFO cpu, user +
sys): both are CPU, not wall time, so little disturbed by other processes on a shared machine.
Prints the median and the lowest of ``--calls`` calls. The server should be private.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import anyio

from benchmarks.common import emit, redis_cpu_s
from streamflow import Queue, StreamflowSettings


async def main(url: str, jobs: int, calls: int, events: str | None) -> None:
    settings = StreamflowSettings.from_url(url, prefix=f"bulk{os.getpid()}")
    if events is not None:
        settings.queue.events = events  # type: ignore[assignment]
    python: list[float] = []
    redis: list[float] = []
    rates: list[float] = []
    async with Queue("bulk", settings=settings) as q:
        await q.add_bulk([("warm", None)] * 1000)  # connections, FCALL or EVALSHA settled
        for _ in range(calls):
            pairs = [("noop", {"ts": 0, "pad": "x" * 80}) for _ in range(jobs)]
            redis_before = await redis_cpu_s(q.client)
            cpu_before = time.process_time()
            start = time.perf_counter()
            ids = await q.add_bulk(pairs)
            seconds = time.perf_counter() - start
            python.append((time.process_time() - cpu_before) / jobs * 1e6)
            redis.append((await redis_cpu_s(q.client) - redis_before) / jobs * 1e6)
            rates.append(jobs / seconds)
            assert len(ids) == jobs and all(ids)
            await q.client.delete(*q.keys.streams, q.keys.events)
        await q.obliterate(force=True)
    emit({"events": settings.queue.events, "jobs_per_call": jobs, "calls": calls,
          "python_cpu_us_per_job": statistics.median(python),
          "python_cpu_us_per_job_min": min(python),
          "redis_cpu_us_per_job": statistics.median(redis),
          "redis_cpu_us_per_job_min": min(redis),
          "jobs_per_s": statistics.median(rates), "jobs_per_s_max": max(rates)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--events", choices=["all", "outcomes", "failures", "none"],
                        default=None)
    args = parser.parse_args()
    anyio.run(main, args.url, args.jobs, args.calls, args.events)
