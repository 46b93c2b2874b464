"""Celery with its Redis broker (kombu): ``apply_async`` through one producer (Celery has no
bulk publish; ``group`` also publishes one message per task) and ``celery -A ... worker``
with the prefork pool at its default concurrency (one child per CPU). No result backend."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from celery import Celery

from .base import PY, Peer, package_version
from .common import TRACKER, env, payload

CONCURRENCY = os.cpu_count() or 1
QUEUE = "bench"

app = Celery("bench", broker=env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(data: dict[str, Any]) -> None:
    TRACKER.hit(data)


class CeleryPeer(Peer):
    name = "celery"
    system = "Celery (Redis broker)"
    concurrency = f"prefork pool, {CONCURRENCY} child processes (default: one per CPU)"
    settings = ("apply_async through one producer (no bulk API); prefetch multiplier 4, "
                "early ack (defaults); no result backend")

    def __init__(self) -> None:
        self.producer_cm: Any = None
        self.producer: Any = None

    async def open(self) -> None:
        self.producer_cm = app.producer_or_acquire()
        self.producer = self.producer_cm.__enter__()

    async def close(self) -> None:
        if self.producer_cm is not None:
            self.producer_cm.__exit__(None, None, None)

    def _publish(self, n: int) -> None:
        for _ in range(n):
            noop.apply_async((payload(),), producer=self.producer)

    async def enqueue_bulk(self, n: int) -> float | None:
        await asyncio.to_thread(self._publish, n)
        return None

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        noop.apply_async((data,), producer=self.producer)

    def worker_command(self, workers: int = 1) -> list[str]:
        return [str(Path(PY).with_name("celery")), "-A", "benchmarks.peers.peer_celery", "worker",
                "-P", "prefork", "-c", str(CONCURRENCY), "-Q", QUEUE, "-l", "WARNING"]

    def versions(self) -> dict[str, str]:
        return {"celery": package_version("celery"), "kombu": package_version("kombu"),
                "redis-py": package_version("redis")}


PEER = CeleryPeer()
