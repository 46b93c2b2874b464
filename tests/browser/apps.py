"""Handlers of the worker processes the browser tests start (``tests.browser.apps:router``).

``provider.call`` fails while the Redis key ``<queue>:provider-down`` exists (a test key, not a
queue key): the test sets it to dead-letter a job, deletes it ("fixes the cause"), and retries.
"""

from __future__ import annotations

from typing import Any

from streamflow import Discard, Job, Router
from tests.apps import _redis

router = Router()


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
