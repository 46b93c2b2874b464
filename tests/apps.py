"""Handlers for worker subprocesses started by tests (``--app tests.apps:router``).

Each handler records what it did in Redis (``<queue>:log`` list), so the test can check from
outside the process.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import redis.asyncio as aioredis

from streamflow import Job, Router

router = Router()
_client: aioredis.Redis | None = None


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["STREAMFLOW_REDIS_URL"])
    return _client


@router.handler("sleep")
async def sleep(job: Job) -> dict[str, Any]:
    await _redis().rpush(f"{job.queue}:started", job.id)
    await anyio.sleep(float(job.data["seconds"]))
    await _redis().rpush(f"{job.queue}:log", f"{job.id}:{os.getpid()}")
    return {"pid": os.getpid()}
