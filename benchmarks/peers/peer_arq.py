"""arq (Redis): ``ArqRedis.enqueue_job`` (arq has no bulk add: 50 concurrent calls) and the
``arq`` CLI worker with its defaults (max_jobs=10, keep_result=3600 s) except ``poll_delay``.

arq's worker reads at most ``queue_read_limit`` (100 with max_jobs=10) job ids per poll and polls
every ``poll_delay`` (0.5 s by default): out of the box it cannot exceed 200 jobs/s, and a job
waits up to 0.5 s. Such a figure would measure the poll setting, not arq, so the worker polls
every 10 ms (POLL_DELAY), as tuned deployments do; that is stated in the output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arq.connections import RedisSettings, create_pool

from .base import PY, Peer, gather_bounded, package_version
from .common import TRACKER, env, payload

MAX_JOBS = 10
POLL_DELAY = 0.01


async def noop(ctx: dict[str, Any], data: dict[str, Any]) -> None:
    TRACKER.hit(data)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY


class ArqPeer(Peer):
    name = "arq"
    system = "arq (Redis)"
    concurrency = f"asyncio, max_jobs={MAX_JOBS} (default)"
    settings = ("no bulk API: 50 concurrent enqueue_job calls; poll_delay=0.01 s (default 0.5 s "
                "caps arq at 200 jobs/s); results kept 3600 s (default)")

    def __init__(self) -> None:
        self.pool: Any = None

    async def open(self) -> None:
        self.pool = await create_pool(WorkerSettings.redis_settings)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()

    async def enqueue_bulk(self, n: int) -> float | None:
        await gather_bounded(n, lambda: self.pool.enqueue_job("noop", payload()))
        return None

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        await self.pool.enqueue_job("noop", data)

    def worker_command(self, workers: int = 1) -> list[str]:
        return [str(Path(PY).with_name("arq")), "benchmarks.peers.peer_arq.WorkerSettings"]

    def versions(self) -> dict[str, str]:
        return {"arq": package_version("arq"), "redis-py": package_version("redis")}


PEER = ArqPeer()
