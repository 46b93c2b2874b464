"""Redis memory per waiting job: INFO used_memory before and after adding 100,000 jobs.

    python -m benchmarks.memory URL [--jobs 100000]
"""

from __future__ import annotations

import argparse
import os

import anyio
import orjson

from benchmarks.common import PAYLOAD, emit
from streamflow import Queue, StreamflowSettings


async def main(url: str, jobs: int) -> None:
    settings = StreamflowSettings.from_url(url, prefix=f"bench{os.getpid()}")
    settings.queue.events = "none"  # measure the jobs, not the capped events stream
    async with Queue("memory", settings=settings) as q:
        before = int((await q.client.info("memory"))["used_memory"])
        for offset in range(0, jobs, 10_000):
            await q.add_bulk([("payment.captured", PAYLOAD)] * min(10_000, jobs - offset))
        after = int((await q.client.info("memory"))["used_memory"])
        await q.client.delete(*q.keys.streams)
    emit({"jobs": jobs, "payload_bytes": len(orjson.dumps(PAYLOAD)),
          "bytes_per_job": (after - before) / jobs})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    anyio.run(main, args.url, args.jobs)
