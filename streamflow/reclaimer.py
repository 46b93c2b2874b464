"""Stalled entries: reclaim those of consumers that stopped, keep our own long jobs fresh."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from . import scripts
from .keys import QueueKeys
from .stored_metrics import MINUTE_MS, metrics_args


async def reclaim_stalled(client: Any, keys: QueueKeys, level: int, *, group: str,
                          consumer: str, min_idle_ms: int, count: int, max_stalled: int,
                          emit: bool = True, events_maxlen: int = 10_000,
                          dead_retention: list[Any] | None = None,
                          dead_after_ms: int | None = None) -> tuple[list[Any], int]:
    """Claim entries of ``level`` idle at least ``min_idle_ms``; dead-letter those delivered
    more than ``max_stalled`` + 1 times: reason ``killed_worker`` when the consumer holding one
    is still registered with a heartbeat older than ``dead_after_ms`` (it died mid-job), else
    ``stalled``.

    ``dead_after_ms`` defaults to half ``min_idle_ms``: the heartbeat of a live holder is at most
    a ``heartbeat_interval`` old, that of one that died with the entry at least ``min_idle_ms``
    less a ``heartbeat_interval``, which tells them apart while ``stalled_interval`` is at least
    4 ``heartbeat_interval`` (30 s and 5 s by default).

    Returns the claimed entries (``[[id, [f1, v1, ...]], ...]``) and how many went dead.
    """
    metrics_key, metrics_ttl = metrics_args(keys)
    claimed, dead = await scripts.call(
        client, scripts.RECLAIM_STALLED,
        [keys.streams[level], keys.dead, keys.events, keys.where, metrics_key, keys.workers],
        [group, consumer, min_idle_ms, count, max_stalled, int(time.time() * 1000),
         keys.levels[level], "1" if emit else "0", events_maxlen,
         *(dead_retention or [0, "0"]), metrics_ttl + MINUTE_MS,
         min_idle_ms // 2 if dead_after_ms is None else dead_after_ms])
    return list(claimed), int(dead)


async def keep_alive(client: Any, keys: QueueKeys, *, group: str, consumer: str,
                     held: Iterable[tuple[int, str]], min_idle_ms: int) -> None:
    """Reset the idle time of entries this consumer still works on, so that no reclaimer
    takes them (XCLAIM JUSTID does not count a delivery). The min-idle guard keeps us from
    taking back an entry another consumer has just claimed."""
    by_level: dict[int, list[str]] = {}
    for level, entry_id in held:
        by_level.setdefault(level, []).append(entry_id)
    if not by_level:
        return
    pipe = client.pipeline(transaction=False)
    for level, entry_ids in by_level.items():
        for start in range(0, len(entry_ids), 1000):
            pipe.xclaim(keys.streams[level], group, consumer, min_idle_ms,
                        entry_ids[start:start + 1000], justid=True)
    await pipe.execute(raise_on_error=False)


async def requeue_stalled(client: Any, keys: QueueKeys, *, group: str, min_idle_ms: int,
                          count: int = 1000, claimer: str = "streamflow-cli") -> int:
    """Put entries idle at least ``min_idle_ms`` back on their stream as new entries, for any
    worker to fetch; returns how many. For operators: workers reclaim by themselves."""
    moved = 0
    for index, (stream, level) in enumerate(zip(keys.streams, keys.levels, strict=True)):
        moved += int(await scripts.call(client, scripts.REQUEUE_STALLED, [stream, keys.where],
                                        [group, claimer, min_idle_ms, count, level, index]))
    return moved
