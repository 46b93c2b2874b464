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


_record_client: aioredis.Redis | None = None


def _recorder() -> aioredis.Redis:
    """A client for the plain Redis of ``STREAMFLOW_TEST_RECORD_URL``: it records what the
    handlers did on a server that no failover touches."""
    global _record_client
    if _record_client is None:
        _record_client = aioredis.Redis.from_url(os.environ["STREAMFLOW_TEST_RECORD_URL"])
    return _record_client


@router.handler("record")
async def record(job: Job) -> int:
    """Append the job id to ``<queue>:processed`` (a list: duplicates show) on the record
    server, with the completion time in ms in ``<queue>:times``; returns the pid, so the
    completion is kept in the ``done`` stream too."""
    import time

    pipe = _recorder().pipeline(transaction=False)
    pipe.rpush(f"{job.queue}:processed", job.id)
    pipe.rpush(f"{job.queue}:times", f"{job.id}:{os.getpid()}:{int(time.time() * 1000)}")
    await pipe.execute()
    return os.getpid()
