"""Stored metrics: completed and failed (dead-lettered) jobs per minute, kept in Redis.

The ack scripts add their batch's counts to the hash of the current minute
(``sf:{q}:metrics:<minute ms>``, fields ``c`` and ``f``) and give it a TTL of the window
(default 24 h): one HINCRBY + PEXPIRE per batch, no round trip of its own, and at most one
small hash per minute (1,440 for a day, about 100 bytes each).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .keys import QueueKeys

MINUTE_MS = 60_000
DEFAULT_WINDOW_MS = 24 * 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Jobs that finished in the minute starting at ``minute_ms`` (UTC epoch ms)."""

    minute_ms: int
    completed: int
    failed: int


def minute_of(now_ms: int) -> int:
    """The start of the minute holding ``now_ms``."""
    return now_ms - now_ms % MINUTE_MS


def metrics_args(keys: QueueKeys, now_ms: int | None = None,
                 window_ms: int = DEFAULT_WINDOW_MS) -> tuple[str, int]:
    """The key and TTL an ack script writes the current minute's counts with."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return keys.metrics_minute(minute_of(now)), window_ms


async def read_metrics(client: Any, keys: QueueKeys, *,
                       since: datetime | timedelta | float | None = None,
                       window_ms: int = DEFAULT_WINDOW_MS) -> list[MinuteCount]:
    """Counts per minute from ``since`` (a datetime, an age as timedelta/seconds, default the
    whole window) to now, oldest first; minutes with nothing finished are included as zeros."""
    now = int(time.time() * 1000)
    if since is None:
        start = now - window_ms
    elif isinstance(since, datetime):
        start = int(since.timestamp() * 1000)
    elif isinstance(since, timedelta):
        start = now - int(since.total_seconds() * 1000)
    else:
        start = now - int(float(since) * 1000)
    start = max(minute_of(start), minute_of(now - window_ms))
    minutes = list(range(start, minute_of(now) + 1, MINUTE_MS))
    pipe = client.pipeline(transaction=False)
    for minute in minutes:
        pipe.hmget(keys.metrics_minute(minute), "c", "f")
    out: list[MinuteCount] = []
    for minute, (completed, failed) in zip(minutes, await pipe.execute(), strict=True):
        out.append(MinuteCount(minute, int(completed or 0), int(failed or 0)))
    return out
