"""Enqueue-to-start latency at light load: one job per millisecond, timestamps in the payload.

    python -m benchmarks.latency URL [--seconds 3] [--against DIR]

The worker runs in a child process (as in production); the handler records
``time.time_ns() - payload.ts`` and the parent reads the samples back from Redis.

Each line also gives the worker process's CPU per job (user + system, from the end of its
start-up to its exit: its shutdown is included, a few ms over thousands of jobs).

``--against DIR`` runs a second worker at the same time, from the checkout ``DIR`` (another
version of streamflow, its own ``benchmarks/``), on a twin queue: every millisecond one job
goes to each queue, in alternating order. Both workers see the same machine load, which makes
a before/after comparison meaningful on a busy machine; one line is printed per worker. With
``--alternate N`` the sides take turns instead, N jobs each (1 job/ms throughout): one worker
is busy at a time, as in a single run, and both still see the machine's load of the same
seconds.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _cpu_s(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _reap(child: subprocess.Popen[bytes]) -> float:
    """Wait for ``child`` to exit; the CPU time (user + system) it used in all."""
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        await anyio.sleep(0.05)


HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The checkout this benchmark belongs to."""


async def main(url: str, seconds: float, against: str | None, alternate: int = 0) -> None:
    jobs = int(seconds * 1000)
    sides = [("this", HERE)] + ([("against", against)] if against else [])
    async with contextlib.AsyncExitStack() as stack:
        queues: list[Queue] = []
        children: list[subprocess.Popen[bytes]] = []
        for n, (_, checkout) in enumerate(sides):
            prefix = f"bench{os.getpid()}s{n}"
            settings = StreamflowSettings.from_url(url, prefix=prefix)
            queues.append(await stack.enter_async_context(Queue(QUEUE, settings=settings)))
            path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
            children.append(subprocess.Popen(
                [sys.executable, "-m", "benchmarks.latency", url, "--worker", "--prefix",
                 prefix, "--expected", str(jobs)], cwd=checkout,
                env={**os.environ, "PYTHONPATH": path}))
        await anyio.sleep(1.0)  # let the workers start and wait for work
        cpu_before = [_cpu_s(child.pid) for child in children]
        start = time.perf_counter()
        for i in range(jobs * 2 if alternate and against else jobs):
            if alternate and against:  # one side at a time, ``alternate`` jobs each
                turn = [queues[(i // alternate) % 2]]
            else:
                turn = queues if i % 2 == 0 else queues[::-1]
            for q in turn:
                await q.add("tick", {"ts": time.time_ns()})
            next_at = start + (i + 1) / 1000
            delay = next_at - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
        cpu = [await _reap(child) - before for child, before in zip(children, cpu_before,
                                                                   strict=True)]
        for (side, _), q, cpu_s in zip(sides, queues, cpu, strict=True):
            key = f"{q.settings.prefix}:latency-samples"
            samples = [ns / 1e6 for ns in orjson.loads(await q.client.get(key))]
            await q.client.delete(*q.keys.streams, q.keys.events, q.keys.done, q.keys.workers,
                                  key)
            line = {"jobs": len(samples), "p50_ms": percentile(samples, 50),
                    "p99_ms": percentile(samples, 99), "max_ms": max(samples),
                    "worker_cpu_us_per_job": round(cpu_s / len(samples) * 1e6, 1)}
            emit({"side": side, **line} if against else line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--expected", type=int, default=0)
    parser.add_argument("--alternate", type=int, default=0, metavar="N",
                        help="with --against: the sides take turns, N jobs (N ms) each, "
                             "instead of one job each every millisecond")
    parser.add_argument("--against", default=None,
                        help="a checkout of another version: its worker runs on a twin queue")
    args = parser.parse_args()
    if args.worker:
        anyio.run(worker_main, args.url, args.prefix, args.expected)
    else:
        anyio.run(main, args.url, args.seconds,
                  os.path.abspath(args.against) if args.against else None, args.alternate)
