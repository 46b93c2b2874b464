"""taskiq with taskiq-redis's ``RedisStreamBroker``: ``task.kiq`` (no bulk API: 50 concurrent
calls) and the ``taskiq worker`` CLI with one worker process and its default
``--max-async-tasks 100``. No result backend (the default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskiq_redis import RedisStreamBroker

from .base import PY, Peer, gather_bounded, package_version
from .common import TRACKER, env, payload

MAX_ASYNC_TASKS = 100

# consumer_id "0": the group sees entries added before it was created (its default, "$",
# skips them); the producer's startup creates the group before the first add anyway.
broker = RedisStreamBroker(env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                           queue_name="bench", consumer_id="0")


@broker.task(task_name="noop")
async def noop(data: dict[str, Any]) -> None:
    TRACKER.hit(data)


class TaskiqPeer(Peer):
    name = "taskiq"
    system = "taskiq + taskiq-redis RedisStreamBroker"
    concurrency = (f"asyncio, 1 worker process (--workers 1), "
                   f"max_async_tasks={MAX_ASYNC_TASKS} (default)")
    settings = ("no bulk API: 50 concurrent kiq calls; broker defaults (xread_count 100, "
                "ack_type when_saved), consumer_id=0")

    async def open(self) -> None:
        await broker.startup()

    async def close(self) -> None:
        await broker.shutdown()

    async def reset(self) -> None:
        # The driver emptied Redis: create the stream and group again.
        await broker.shutdown()
        await broker.startup()

    async def enqueue_bulk(self, n: int) -> float | None:
        await gather_bounded(n, lambda: noop.kiq(payload()))
        return None

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        await noop.kiq(data)

    def worker_command(self, workers: int = 1) -> list[str]:
        return [str(Path(PY).with_name("taskiq")), "worker", "benchmarks.peers.peer_taskiq:broker",
                "--workers", "1", "--max-async-tasks", str(MAX_ASYNC_TASKS),
                "--log-level", "WARNING"]

    def versions(self) -> dict[str, str]:
        return {"taskiq": package_version("taskiq"),
                "taskiq-redis": package_version("taskiq-redis"),
                "redis-py": package_version("redis")}


PEER = TaskiqPeer()
