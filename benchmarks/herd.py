"""The idle-worker herd: N idle workers, jobs added one at a time; what one add costs.

    python -m benchmarks.herd URL [--workers 8] [--jobs 300] [--gap-ms 5]

Every idle worker waits in XREAD on the level streams; an add wakes them all. The worker
that took the last job waits with its next fetch-script call queued behind the XREAD (Redis
runs it at once, and it gets the job); the others, which found their last job taken, wait
without it and ask the fetch script after they wake, one round trip later. Printed: fetch-script
calls per add (the workers' own counters), Redis CPU per add (INFO cpu), and the commands
Redis ran per add with the time it spent in them (INFO commandstats), for 1 worker and for N,
on the same server.
"""

from __future__ import annotations

import argparse
import os
import time

import anyio
import redis

from benchmarks.common import emit
from streamflow import Job, Queue, StreamflowSettings, Worker
from streamflow.worker.fetcher import FetchState


def redis_cpu_s(url: str) -> float:
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_commands(url: str) -> tuple[int, float]:
    """Commands the server ran so far, and the microseconds it spent in them
    (``INFO commandstats``: less inflated by a busy machine than ``INFO cpu``)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return (sum(int(s["calls"]) for s in stats.values()),
            sum(float(s["usec"]) for s in stats.values()))


async def one(url: str, workers: int, jobs: int, gap_ms: float) -> dict[str, float]:
    settings = StreamflowSettings.from_url(url, prefix=f"herd{os.getpid()}w{workers}")
    done = 0
    finished = anyio.Event()

    async def handler(job: Job) -> None:
        nonlocal done
        done += 1
        if done == jobs:
            finished.set()

    async with Queue("herd", settings=settings) as q:
        pool = [Worker("herd", handler, settings=settings, concurrency=10)
                for _ in range(workers)]
        async with anyio.create_task_group() as tg:
            for worker in pool:
                tg.start_soon(lambda w=worker: w.run(handle_signals=False))
            while not all(w.fetcher.state is FetchState.WAITING for w in pool):
                await anyio.sleep(0.01)
            rounds_before = sum(w.fetcher.rounds for w in pool)
            cpu_before = redis_cpu_s(url)
            commands_before, usec_before = redis_commands(url)
            start = time.perf_counter()
            for i in range(jobs):
                await q.add("tick", i)
                next_at = start + (i + 1) * gap_ms / 1000
                await anyio.sleep(max(next_at - time.perf_counter(), 0))
            await finished.wait()
            cpu_s = redis_cpu_s(url) - cpu_before
            commands, usec = redis_commands(url)
            rounds = sum(w.fetcher.rounds for w in pool) - rounds_before
            for worker in pool:
                await worker.close()
        await q.obliterate(force=True)
    return {"workers": workers, "fetch_calls_per_add": rounds / jobs,
            "redis_cpu_us_per_add": cpu_s / jobs * 1e6,
            "redis_commands_per_add": (commands - commands_before) / jobs,
            "redis_command_us_per_add": (usec - usec_before) / jobs}


async def main(url: str, workers: int, jobs: int, gap_ms: float) -> None:
    emit({"one": await one(url, 1, jobs, gap_ms),
          "many": await one(url, workers, jobs, gap_ms)})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    args = parser.parse_args()
    anyio.run(main, args.url, args.workers, args.jobs, args.gap_ms)
