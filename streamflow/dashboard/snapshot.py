"""What the overview and workers pages show, read in a few pipelined round trips."""

from __future__ import annotations

import time
from typing import Any, TypedDict

import orjson
from redis.exceptions import ResponseError

from ..inspect import QueueCounts
from ..queue import Queue


class QueueRow(TypedDict):
    """One queue on the overview."""

    name: str
    levels: dict[str, int]
    waiting: int
    active: int
    delayed: int
    dead: int
    consumers: int
    workers: int
    paused: bool
    rate_limit: str | None
    limited_for_ms: int
    oldest_waiting_ms: int | None


class ConsumerRow(TypedDict):
    """One consumer of a group, joined with its worker heartbeat."""

    queue: str
    group: str
    name: str
    pending: int
    idle_ms: int
    host: str | None
    pid: int | None
    concurrency: int | None
    active: int | None
    processed: int | None
    failed: int | None
    heartbeat_age_ms: int | None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _ms_of(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


async def queue_rows(queues: list[Queue], group: str) -> list[QueueRow]:
    """Counts, limiter state and oldest waiting age of every queue in ``queues``.

    One round trip for the counts of each queue, then one pipeline for all queues: meta hash,
    worker registry size, and the first undelivered entry of every level (O(log N) each).
    """
    if not queues:
        return []
    client = queues[0].client
    counts: list[QueueCounts] = [await q.counts(group) for q in queues]
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.hgetall(q.keys.meta)
        pipe.hlen(q.keys.workers)
        for stream in q.keys.streams:
            pipe.xinfo_groups(stream)
    infos = await pipe.execute(raise_on_error=False)
    per_queue = 2 + len(queues[0].keys.streams)
    pipe = client.pipeline(transaction=False)
    for i, q in enumerate(queues):
        groups_by_level = infos[i * per_queue + 2:(i + 1) * per_queue]
        for stream, groups in zip(q.keys.streams, groups_by_level, strict=True):
            last = "0-0"
            if not isinstance(groups, ResponseError):
                for info in groups:
                    if _text(info["name"]) == group:
                        last = _text(info["last-delivered-id"])
            pipe.xrange(stream, min=f"({last}", max="+", count=1)
    firsts = await pipe.execute(raise_on_error=False)
    now = int(time.time() * 1000)
    rows: list[QueueRow] = []
    levels = len(queues[0].keys.streams)
    for i, (q, c) in enumerate(zip(queues, counts, strict=True)):
        meta_raw, workers = infos[i * per_queue], infos[i * per_queue + 1]
        meta = {} if isinstance(meta_raw, ResponseError) else {
            _text(k): _text(v) for k, v in meta_raw.items()}
        oldest: int | None = None
        for first in firsts[i * levels:(i + 1) * levels]:
            if isinstance(first, ResponseError) or not first:
                continue
            age = now - _ms_of(_text(first[0][0]))
            oldest = age if oldest is None else max(oldest, age)
        rate = (f"{meta['rl_max']} per {int(meta['rl_ms']) / 1000:g}s"
                if meta.get("rl_max") and meta.get("rl_ms") else None)
        limited = max(int(meta.get("limited_until") or 0) - now, 0)
        rows.append(QueueRow(
            name=q.name, levels={k: v["waiting"] for k, v in c["levels"].items()},
            waiting=c["waiting"], active=c["pending"], delayed=c["delayed"], dead=c["dead"],
            consumers=c["consumers"], workers=0 if isinstance(workers, ResponseError)
            else int(workers), paused=c["paused"], rate_limit=rate, limited_for_ms=limited,
            oldest_waiting_ms=oldest if c["waiting"] else None))
    return rows


async def consumer_rows(q: Queue) -> list[ConsumerRow]:
    """Every consumer of every group on the queue's streams, with its heartbeat if any."""
    client = q.client
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(q.keys.workers)
    for stream in q.keys.streams:
        pipe.xinfo_groups(stream)
    registry_raw, *group_infos = await pipe.execute(raise_on_error=False)
    registry: dict[str, dict[str, Any]] = {}
    if not isinstance(registry_raw, ResponseError):
        for name, raw in registry_raw.items():
            try:
                registry[_text(name)] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
    groups = sorted({_text(info["name"]) for infos in group_infos
                     if not isinstance(infos, ResponseError) for info in infos})
    pipe = client.pipeline(transaction=False)
    pairs = [(group, stream) for group in groups for stream in q.keys.streams]
    for group, stream in pairs:
        pipe.xinfo_consumers(stream, group)
    merged: dict[tuple[str, str], tuple[int, int]] = {}
    for (group, _), result in zip(pairs, await pipe.execute(raise_on_error=False), strict=True):
        if isinstance(result, ResponseError):
            continue
        for consumer in result:
            key = (group, _text(consumer["name"]))
            pending, idle = merged.get(key, (0, 1 << 62))
            merged[key] = (pending + int(consumer["pending"]), min(idle, int(consumer["idle"])))
    now = int(time.time() * 1000)
    rows: list[ConsumerRow] = []
    for (group, name), (pending, idle) in sorted(merged.items()):
        beat = registry.get(name, {})
        seen = beat.get("last_seen_ms")
        rows.append(ConsumerRow(
            queue=q.name, group=group, name=name, pending=pending, idle_ms=idle,
            host=beat.get("host"), pid=beat.get("pid"), concurrency=beat.get("concurrency"),
            active=beat.get("active"), processed=beat.get("processed"),
            failed=beat.get("failed"),
            heartbeat_age_ms=now - int(seen) if isinstance(seen, int) else None))
    return rows
