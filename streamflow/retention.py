"""Retention: MINID trimming of work streams, and safe removal of consumers that are gone."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.exceptions import ResponseError

from . import scripts
from .keys import QueueKeys


async def trim_streams(client: Any, keys: QueueKeys, *, exact: bool = True) -> int:
    """Drop every entry no consumer group still needs from every level stream; returns how
    many. One call catches up however many entries were acknowledged since the last one, so
    calling it every second keeps a stream at its backlog plus one second of processed work.

    ``exact=False`` removes whole stream nodes only (the entries of a partly acknowledged
    node stay until the next call).
    """
    commands = [scripts.TRIM_STREAM.command([stream], ["=" if exact else "~"])
                for stream in keys.streams]
    removed = 0
    for result in await scripts.pipeline(client, commands):
        if isinstance(result, Exception):
            raise result
        removed += int(result)
    return removed


async def live_workers(client: Any, keys: QueueKeys, *, stale_after_ms: int) -> set[str]:
    """Consumers whose worker heartbeat in the registry is younger than ``stale_after_ms``."""
    now = int(time.time() * 1000)
    live: set[str] = set()
    for name, raw in (await client.hgetall(keys.workers)).items():
        try:
            last_seen = int(orjson.loads(raw)["last_seen_ms"])
        except (ValueError, KeyError, TypeError):
            continue
        if now - last_seen < stale_after_ms:
            live.add(name.decode())
    return live


async def remove_gone_consumers(client: Any, keys: QueueKeys, group: str, *,
                                stale_after_ms: int) -> list[str]:
    """Delete consumers of ``group`` whose worker heartbeat is older than ``stale_after_ms``
    (or missing) and that hold no pending entry; their registry entry goes too.

    A consumer still holding entries is kept until a reclaimer has taken them over.
    """
    live = await live_workers(client, keys, stale_after_ms=stale_after_ms)
    pipe = client.pipeline(transaction=False)
    for stream in keys.streams:
        pipe.xinfo_consumers(stream, group)
    known: dict[str, int] = {}
    for result in await pipe.execute(raise_on_error=False):
        if isinstance(result, ResponseError):
            continue
        for consumer in result:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            known[name] = min(known.get(name, 1 << 62), int(consumer["idle"]))
    removed: list[str] = []
    for name, idle_ms in known.items():
        if name in live or idle_ms < stale_after_ms:
            continue
        deleted = await scripts.call(client, scripts.DELETE_CONSUMER, list(keys.streams),
                                     [group, name])
        if int(deleted) == 1:
            removed.append(name)
            await client.hdel(keys.workers, name)
    return removed
