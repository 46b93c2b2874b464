"""Cost of a merged page over a partitioned queue: client CPU, Redis commands and Redis CPU
per page of waiting jobs, for 1, 4 and 16 partitions, against one partition's page.

A merged page reads up to ``limit`` jobs from every partition (concurrently), so its cost grows
with N x limit; one partition's page costs what a plain queue's does. Client CPU and command
counts, not wall time, so a busy machine still gives the same figures. On a private
redis-server, about a minute:

    python -m benchmarks.browse_partitions [--jobs 100000] [--limit 50] [--repeat 20]
"""

from __future__ import annotations

import argparse
import time

import anyio

from benchmarks.common import PAYLOAD, private_redis
from streamflow import JobSpec, Queue, StreamflowSettings


async def _measure(q: Queue, limit: int, repeat: int, partition: int | None
                   ) -> tuple[float, float, float]:
    """(client CPU ms, Redis commands, Redis CPU µs) per page."""
    await q.client.config_resetstat()
    started = time.process_time()
    for _ in range(repeat):
        await q.jobs("waiting", limit=limit, partition=partition)
    cpu_ms = (time.process_time() - started) * 1000 / repeat
    stats = await q.client.info("commandstats")
    counted = {name: value for name, value in stats.items() if name != "cmdstat_config"}
    return (cpu_ms, sum(v["calls"] for v in counted.values()) / repeat,
            sum(v["usec"] for v in counted.values()) / repeat)


async def _run(url: str, jobs: int, limit: int, repeat: int) -> None:
    settings = StreamflowSettings.from_url(url)
    print(f"| partitions | merged page of {limit}: client CPU ms | Redis commands | "
          "Redis CPU µs | one partition's page: client CPU ms / commands |")
    print("|---:|---:|---:|---:|---:|")
    for parts in (1, 4, 16):
        name = f"browse-bench-{parts}"
        async with Queue(name, settings=settings, partitions=parts) as q:
            for start in range(0, jobs, 5000):
                await q.add_bulk([JobSpec("payment.captured", PAYLOAD, job_id=f"evt_{i}")
                                  for i in range(start, min(start + 5000, jobs))])
            merged = await _measure(q, limit, repeat, None)
            one = await _measure(q, limit, repeat, 0 if parts > 1 else None)
            print(f"| {parts} | {merged[0]:.1f} | {merged[1]:.0f} | {merged[2]:.0f} | "
                  f"{one[0]:.1f} / {one[1]:.0f} |")
            await q.obliterate(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with private_redis() as url:
        anyio.run(_run, url, args.jobs, args.limit, args.repeat)


if __name__ == "__main__":
    main()
