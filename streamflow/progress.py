"""Job progress: ``await job.progress(50)`` (or a dict) from a handler.

The value is stored on a tracked job's status record (``progress``, JSON) and sent as a
``progress`` event (fields ``i`` job id, ``n`` name, ``p`` the JSON value) when the queue emits
all events; both in one round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .job import Job
from .keys import QueueKeys
from .settings import QueueDefaults

ProgressCallback = Callable[[Job, object], Awaitable[None]]


async def report_progress(client: Any, keys: QueueKeys, job: Job, value: object, emit: bool,
                          *, events_maxlen: int = 10_000, ttl_ms: int = 86_400_000) -> None:
    """Store ``value`` on ``job``'s status record (tracked jobs only, kept ``ttl_ms``) and XADD
    a ``progress`` event when ``emit``. ``value``: a number or a JSON-serializable dict."""
    if not isinstance(value, int | float | dict) or isinstance(value, bool):
        raise TypeError(f"progress must be a number or a dict, not {type(value).__name__}")
    encoded = orjson.dumps(value)
    if not emit and not job.options.track:
        return
    pipe = client.pipeline(transaction=False)
    if job.options.track:
        key = keys.status(job.id)
        pipe.hset(key, "progress", encoded)
        pipe.pexpire(key, ttl_ms)
    if emit:
        pipe.xadd(keys.events, {"e": "progress", "i": job.id, "n": job.name, "p": encoded},
                  maxlen=events_maxlen, approximate=True)
    await pipe.execute()


def progress_reporter(client: Any, keys: QueueKeys, defaults: QueueDefaults) -> ProgressCallback:
    """The ``Job._progress`` callback of a worker: ``report_progress`` with the queue's event
    level, events MAXLEN and status TTL (the dedup TTL)."""
    emit = defaults.emit_all
    maxlen = defaults.events_maxlen
    ttl_ms = int(defaults.dedup_ttl * 1000)

    async def progress(job: Job, value: object) -> None:
        await report_progress(client, keys, job, value, emit, events_maxlen=maxlen,
                              ttl_ms=ttl_ms)

    return progress
