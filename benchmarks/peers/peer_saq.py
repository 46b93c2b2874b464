"""saq (Redis): ``Queue.enqueue`` (no bulk add: 50 concurrent calls) and the ``saq`` CLI
worker with its default concurrency of 10."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saq import Queue

from .base import PY, Peer, gather_bounded, package_version
from .common import TRACKER, env, payload

CONCURRENCY = 10
QUEUE = "bench"


async def noop(ctx: dict[str, Any], *, data: dict[str, Any]) -> None:
    TRACKER.hit(data)


def make_queue() -> Queue:
    return Queue.from_url(env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"), name=QUEUE)


settings = {
    "queue": make_queue(),
    "functions": [noop],
    "concurrency": CONCURRENCY,
}


class SaqPeer(Peer):
    name = "saq"
    system = "saq (Redis)"
    concurrency = f"asyncio, concurrency={CONCURRENCY} (default)"
    settings = "no bulk API: 50 concurrent enqueue calls; job defaults (ttl 600 s)"

    def __init__(self) -> None:
        self.queue: Any = None

    async def open(self) -> None:
        self.queue = make_queue()
        await self.queue.connect()

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.disconnect()

    async def enqueue_bulk(self, n: int) -> float | None:
        await gather_bounded(n, lambda: self.queue.enqueue("noop", data=payload()))
        return None

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        await self.queue.enqueue("noop", data=data)

    def worker_command(self, workers: int = 1) -> list[str]:
        return [str(Path(PY).with_name("saq")), "benchmarks.peers.peer_saq.settings"]

    def versions(self) -> dict[str, str]:
        return {"saq": package_version("saq"), "redis-py": package_version("redis")}


PEER = SaqPeer()
