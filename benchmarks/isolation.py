"""What process isolation costs, and what a poison job costs under it.

    python -m benchmarks.isolation URL [--jobs 2000] [--concurrency 2]

Runs ``--jobs`` trivial jobs through one running worker (timed from the add: the children
have started), with its handler (a plain function, so the
unisolated run pays its thread hop too) run on the worker's threads, then in child processes
(``isolation="process"``, one child per concurrency slot); then times a job that calls
``os._exit`` under isolation from ``add`` to its dead letter (one attempt), and the
replacement of the child it killed. Prints one JSON line per mode.
"""

from __future__ import annotations

import argparse
import os
import time

import anyio

from benchmarks.common import PAYLOAD, emit
from streamflow import Job, Queue, Router, StreamflowSettings, Worker

router = Router()


@router.handler("noop")
def noop(job: Job) -> None:
    return None


@router.handler("poison")
def poison(job: Job) -> None:
    os._exit(1)


async def run(url: str, jobs: int, concurrency: int, isolation: str) -> None:
    settings = StreamflowSettings.from_url(url, prefix=f"bench{os.getpid()}")
    settings.worker.isolation = isolation  # type: ignore[assignment]
    settings.worker.isolation_processes = concurrency
    settings.worker.promote_interval = 0.01
    name = f"isolation-{isolation}"
    async with Queue(name, settings=settings) as q:
        worker = Worker(name, router, settings=settings, concurrency=concurrency)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            while not worker.ready:  # the children have started
                await anyio.sleep(0.005)
            started = time.perf_counter()
            await q.add_bulk([("noop", PAYLOAD)] * jobs)
            while worker.processed < jobs:
                await anyio.sleep(0.005)
            elapsed = time.perf_counter() - started
            result = {"isolation": isolation, "jobs": jobs, "concurrency": concurrency,
                      "per_s": jobs / elapsed, "us_per_job": elapsed / jobs * 1e6}
            if isolation == "process":
                added = time.perf_counter()
                await q.add("poison", {}, attempts=1)
                while (await q.counts())["dead"] < 1:
                    await anyio.sleep(0.005)
                result["poison_to_dead_letter_ms"] = (time.perf_counter() - added) * 1000
                await q.add_bulk([("noop", PAYLOAD)] * concurrency)
                while worker.processed < jobs + concurrency:
                    await anyio.sleep(0.005)
                result["back_to_full_pool_ms"] = (time.perf_counter() - added) * 1000
            await worker.close()
        await q.obliterate(force=True)
    emit(result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    for mode in ("none", "process"):
        anyio.run(run, args.url, args.jobs, args.concurrency, mode)
