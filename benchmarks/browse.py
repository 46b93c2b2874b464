"""Paging cost: page 1 and page 1,000 of a queue of 1M waiting jobs (and of delayed jobs).

Cursors are stream ids and zset scores, so page 1,000 should cost what page 1 costs. Fills a
private redis-server with ``add_bulk``, walks to page 1,000 by following cursors, and times
each page (median of ``--repeat`` reads of the same page). Prints a table. Runs on demand
(not part of ``make bench``), about a minute:

    python -m benchmarks.browse [--jobs 1000000] [--delayed 100000] [--limit 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio

from benchmarks.common import PAYLOAD, private_redis
from streamflow import JobSpec, Queue, StreamflowSettings


async def _fill(q: Queue, jobs: int, delayed: int) -> None:
    for offset in range(0, jobs, 20_000):
        await q.add_bulk([("payment.captured", PAYLOAD)] * min(20_000, jobs - offset))
    for offset in range(0, delayed, 20_000):
        await q.add_bulk([JobSpec("payment.captured", PAYLOAD, delay=3600 + i)
                          for i in range(offset, min(offset + 20_000, delayed))])


async def _time_page(q: Queue, state: str, page: int, limit: int, repeat: int,
                     newest_first: bool) -> tuple[float, int]:
    cursor = None
    for _ in range(page - 1):
        cursor = (await q.jobs(state, cursor=cursor, limit=limit,
                               newest_first=newest_first)).next_cursor
    samples = []
    size = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = await q.jobs(state, cursor=cursor, limit=limit, newest_first=newest_first)
        samples.append((time.perf_counter() - start) * 1000)
        size = len(result.jobs)
    return statistics.median(samples), size


async def main(jobs: int, delayed: int, limit: int, repeat: int) -> None:
    with private_redis() as url:
        settings = StreamflowSettings.from_url(url, prefix="benchbrowse")
        settings.queue.events = "none"
        async with Queue("browse", settings=settings) as q:
            start = time.perf_counter()
            await _fill(q, jobs, delayed)
            print(f"filled {jobs:,} waiting + {delayed:,} delayed jobs in "
                  f"{time.perf_counter() - start:.1f}s; page size {limit}")
            print(f"{'state':<9} {'order':<13} {'page':>6} {'jobs':>5} {'median ms':>10}")
            for state, total in (("waiting", jobs), ("delayed", delayed)):
                for newest_first in (True, False):
                    for page in (1, 1000):
                        if (page - 1) * limit >= total:
                            continue
                        ms, size = await _time_page(q, state, page, limit, repeat,
                                                    newest_first)
                        order = "newest first" if newest_first else "oldest first"
                        print(f"{state:<9} {order:<13} {page:>6,} {size:>5} {ms:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--delayed", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    anyio.run(main, args.jobs, args.delayed, args.limit, args.repeat)
