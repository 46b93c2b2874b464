"""streamflow through its public API: ``Queue.add_bulk`` / ``Queue.add`` and ``Worker``.

Worker process: ``python -m benchmarks.peers.streamflow_peer worker``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from .base import PY, Peer, package_version
from .common import TRACKER, env, payload

QUEUE = "bench"
PREFIX = "bench"
CONCURRENCY = 100


def settings() -> Any:
    from streamflow import StreamflowSettings

    return StreamflowSettings.from_url(env("BENCH_REDIS_URL"), prefix=PREFIX)


class StreamflowPeer(Peer):
    name = "streamflow"
    system = "streamflow (Redis Streams)"
    concurrency = f"asyncio, concurrency={CONCURRENCY} per worker process"
    settings = "add_bulk (chunks of 1,000, one pipeline); library defaults otherwise"

    def __init__(self) -> None:
        self.queue: Any = None

    async def open(self) -> None:
        from streamflow import Queue

        self.queue = Queue(QUEUE, settings=settings())
        await self.queue.__aenter__()

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.close()

    async def reset(self) -> None:
        # The driver emptied Redis; the group is created again at 0 before anything is added.
        if self.queue is not None:
            await self.queue.ensure_group()

    async def enqueue_bulk(self, n: int) -> float | None:
        await self.queue.add_bulk([("noop", payload()) for _ in range(n)])
        return None

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        await self.queue.add("noop", data)

    def worker_command(self, workers: int = 1) -> list[str]:
        return [PY, "-m", "benchmarks.peers.streamflow_peer", "worker"]

    def versions(self) -> dict[str, str]:
        return {"streamflow": package_version("streamflow"), "redis-py": package_version("redis")}


PEER = StreamflowPeer()


async def handler(job: Any) -> None:
    TRACKER.hit(job.data)


async def run_worker() -> None:
    from streamflow import Worker

    worker = Worker(QUEUE, handler, settings=settings(), concurrency=CONCURRENCY)
    await worker.run()


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    asyncio.run(run_worker())
