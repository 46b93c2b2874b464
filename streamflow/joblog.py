"""Job logs: ``await job.log("called provider: 502")`` inside a handler appends a line to
that job's log (a Redis list capped at ``LOG_LINES``, expiring with the job's other records);
``Queue.job_logs`` reads it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from .keys import QueueKeys

LOG_LINES = 100
LINE_CHARS = 2000

LogCallback = Callable[[str, str], Awaitable[None]]


async def append_log(client: Any, keys: QueueKeys, job_id: str, line: str, *,
                     ttl_ms: int, lines: int = LOG_LINES) -> None:
    """Append ``line`` (stamped with the time, cut at ``LINE_CHARS``) in one round trip."""
    stamped = f"{int(time.time() * 1000)} {line[:LINE_CHARS]}"
    key = keys.job_log(job_id)
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, stamped)
    pipe.ltrim(key, -lines, -1)
    pipe.pexpire(key, ttl_ms)
    await pipe.execute()


async def read_log(client: Any, keys: QueueKeys, job_id: str, limit: int = LOG_LINES
                   ) -> list[str]:
    """The last ``limit`` lines of ``job_id``'s log, oldest first, each ``<ms> <text>``."""
    raw = await client.lrange(keys.job_log(job_id), -limit, -1)
    return [line.decode(errors="replace") for line in raw]


def log_writer(client: Any, keys: QueueKeys, ttl_ms: int, lines: int = LOG_LINES
               ) -> LogCallback:
    """The ``Job._log`` callback of a worker: keeps ``lines`` per job for ``ttl_ms``."""

    async def write(job_id: str, line: str) -> None:
        await append_log(client, keys, job_id, line, ttl_ms=ttl_ms, lines=lines)

    return write
