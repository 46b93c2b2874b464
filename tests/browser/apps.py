"""Handlers of the worker processes the browser tests start (``tests.browser.apps:router``).

``provider.call`` fails while the Redis key ``<queue>:provider-down`` exists (a test key, not a
queue key): the test sets it to dead-letter a job, deletes it ("fixes the cause"), and retries.
"""

from __future__ import annotations

import os
from typing import Any

import redis.asyncio as aioredis

from streamflow import Discard, Job, Router

router = Router()
_client: aioredis.Redis | None = None


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["STREAMFLOW_REDIS_URL"])
    return _client


@router.handler("provider.call")
async def provider_call(job: Job) -> dict[str, Any]:
    if await _redis().exists(f"{job.queue}:provider-down"):
        raise ConnectionError("provider answered 503 Service Unavailable")
    return {"captured": job.data.get("payment_id")}


@router.handler("noop")
async def noop(job: Job) -> None:
    return None


@router.handler("payment.capture")
async def payment_capture(job: Job) -> dict[str, Any]:
    if job.data.get("amount", 0) <= 0:
        raise Discard(f"amount must be positive, got {job.data.get('amount')}")
    return {"amount": job.data["amount"], "email": job.data.get("email")}
