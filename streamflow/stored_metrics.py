"""Stored metrics: completed and failed (dead-lettered) jobs per minute, kept in Redis.

The ack scripts add their batch's counts to the hash of the current minute
(``sf:{q}:metrics:<minute ms>``, fields ``c`` and ``f``) and give it a TTL of the window
(default 24 h): one HINCRBY + PEXPIRE per batch, no round trip of its own, and at most one
small hash per minute (1,440 for a day, about 100 bytes each).

A partitioned queue keeps these hashes per partition (``sf:{q#i}:metrics:<minute ms>``, written
by that partition's ack scripts); `read_metrics` on the queue's own keys sums every partition,
on a partition's keys (``queue.partition(i).metrics()``) reads that one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .keys import QueueKeys
from .queue.partitioned import stored_partitions

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
                       window_ms: int = DEFAULT_WINDOW_MS,
                       partition: int | None = None) -> list[MinuteCount]:
    """Counts per minute from ``since`` (a datetime, an age as timedelta/seconds, default the
    whole window) to now, oldest first; minutes with nothing finished are included as zeros.

    For a partitioned queue's own keys: the sum over its partitions (the count recorded in its
    meta hash), or partition ``partition`` alone; a partition's keys read that partition."""
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
    layout = await metrics_layout(client, keys, partition)
    pipe = client.pipeline(transaction=False)
    for part in layout:
        for minute in minutes:
            pipe.hmget(part.metrics_minute(minute), "c", "f")
    replies = await pipe.execute()
    out: list[MinuteCount] = []
    for at, minute in enumerate(minutes):
        counts = [replies[at + k * len(minutes)] for k in range(len(layout))]
        out.append(MinuteCount(minute, sum(int(c or 0) for c, _ in counts),
                               sum(int(f or 0) for _, f in counts)))
    return out


async def metrics_layout(client: Any, keys: QueueKeys,
                         partition: int | None = None) -> list[QueueKeys]:
    """The keys whose minute counters make up the metrics of ``keys``: its partitions' on a
    partitioned queue (only ``partition`` when given), else its own."""
    if keys.partition is not None:
        if partition not in (None, keys.partition):
            raise ValueError(f"these are the keys of partition {keys.partition}, "
                             f"not {partition}")
        return [keys]
    count = await stored_partitions(client, keys)
    if partition is not None:
        if not 0 <= partition < count:
            raise ValueError(f"partition {partition} does not exist: queue {keys.queue!r} "
                             f"has {count} (0-{count - 1})")
        return [keys.part(partition)] if count > 1 else [keys]
    return [keys] if count == 1 else [keys.part(i) for i in range(count)]
