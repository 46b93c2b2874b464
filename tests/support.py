"""Helpers shared by the integration and chaos tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from streamflow import StreamflowSettings, Worker


def fast_settings(redis_url: str, **queue: Any) -> StreamflowSettings:
    """Settings with short intervals so tests do not wait for production timings."""
    settings = StreamflowSettings.from_url(redis_url)
    settings.worker.block_ms = 200
    settings.worker.promote_interval = 0.05
    settings.worker.heartbeat_interval = 0.5
    settings.worker.janitor_interval = 0.5
    settings.worker.shutdown_grace = 5
    settings.queue.backoff_delay = 0.05
    for name, value in queue.items():
        setattr(settings.queue, name, value)
    return settings


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    """Run ``workers`` in the background for the body of the ``async with``."""
    async with anyio.create_task_group() as tg:
        for worker in workers:
            tg.start_soon(partial(worker.run, handle_signals=False))
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(30):
                for worker in workers:
                    await worker.close()


async def wait_until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0,
                     interval: float = 0.02) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await anyio.sleep(interval)
