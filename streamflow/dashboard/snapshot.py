"""What the overview and workers pages show, read in a few pipelined round trips."""

from __future__ import annotations

import time
from typing import Any, TypedDict

import orjson
from redis.exceptions import ResponseError

from ..inspect import QueueCounts, read_counts
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
    partitions: int


class PartitionRow(TypedDict):
    """One partition of a partitioned queue on its queue page."""

    partition: int
    waiting: int
    active: int
    delayed: int
    dead: int
    held: int
    locked_keys: int
    paused: bool


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

    One round trip for the counts of each queue (partition), then one pipeline for all
    queues: meta hash, worker registry size, and the first undelivered entry of every level
    (O(log N) each). A partitioned queue shows its totals: the oldest waiting job of any
    partition, the largest worker registry, the limiter of partition 0 (every partition gets
    the same settings).
    """
    if not queues:
        return []
    client = queues[0].client
    counts: list[QueueCounts] = [await q.counts(group) for q in queues]
    layouts = [(i, keys) for i, q in enumerate(queues) for keys in q.partition_keys]
    pipe = client.pipeline(transaction=False)
    for _, keys in layouts:
        pipe.hgetall(keys.meta)
        pipe.hlen(keys.workers)
        for stream in keys.streams:
            pipe.xinfo_groups(stream)
    infos = await pipe.execute(raise_on_error=False)
    levels = len(queues[0].keys.streams)
    per_layout = 2 + levels
    pipe = client.pipeline(transaction=False)
    for n, (_, keys) in enumerate(layouts):
        groups_by_level = infos[n * per_layout + 2:(n + 1) * per_layout]
        for stream, groups in zip(keys.streams, groups_by_level, strict=True):
            pipe.xrange(stream, min=f"({_last_delivered(groups, group)}", max="+", count=1)
    firsts = await pipe.execute(raise_on_error=False)
    now = int(time.time() * 1000)
    meta: list[dict[str, str]] = [{} for _ in queues]
    workers = [0] * len(queues)
    oldest: list[int | None] = [None] * len(queues)
    for n, (i, _) in enumerate(layouts):
        meta_raw, registry = infos[n * per_layout], infos[n * per_layout + 1]
        if not meta[i] and not isinstance(meta_raw, ResponseError):
            meta[i] = {_text(k): _text(v) for k, v in meta_raw.items()}
        if not isinstance(registry, ResponseError):
            workers[i] = max(workers[i], int(registry))
        for first in firsts[n * levels:(n + 1) * levels]:
            if isinstance(first, ResponseError) or not first:
                continue
            age = now - _ms_of(_text(first[0][0]))
            oldest[i] = age if oldest[i] is None else max(oldest[i] or 0, age)
    rows: list[QueueRow] = []
    for i, (q, c) in enumerate(zip(queues, counts, strict=True)):
        m = meta[i]
        rate = (f"{m['rl_max']} per {int(m['rl_ms']) / 1000:g}s"
                if m.get("rl_max") and m.get("rl_ms") else None)
        limited = max(int(m.get("limited_until") or 0) - now, 0)
        rows.append(QueueRow(
            name=q.name, levels={k: v["waiting"] for k, v in c["levels"].items()},
            waiting=c["waiting"], active=c["pending"], delayed=c["delayed"], dead=c["dead"],
            consumers=c["consumers"], workers=workers[i], paused=c["paused"],
            rate_limit=rate, limited_for_ms=limited,
            oldest_waiting_ms=oldest[i] if c["waiting"] else None,
            partitions=q.partitions))
    return rows


def _last_delivered(groups: Any, group: str) -> str:
    if not isinstance(groups, ResponseError):
        for info in groups:
            if _text(info["name"]) == group:
                return _text(info["last-delivered-id"])
    return "0-0"


async def partition_rows(q: Queue, group: str) -> list[PartitionRow]:
    """One row per partition of a partitioned queue (none for a plain queue): its counts
    (with its held jobs: an ordered queue's later jobs of a key, waiting for the one that
    runs) and its locked keys."""
    if q.partitions == 1:
        return []
    pipe = q.client.pipeline(transaction=False)
    for keys in q.partition_keys:
        pipe.hlen(keys.keylocks)
    locked = await pipe.execute()
    rows: list[PartitionRow] = []
    for i, (keys, locked_keys) in enumerate(zip(q.partition_keys, locked, strict=True)):
        c = await read_counts(q.client, keys, group)
        rows.append(PartitionRow(
            partition=i, waiting=c["waiting"], active=c["pending"], delayed=c["delayed"],
            dead=c["dead"], held=c["held"], locked_keys=int(locked_keys), paused=c["paused"]))
    return rows


async def consumer_rows(q: Queue) -> list[ConsumerRow]:
    """Every consumer of every group on the queue's streams (of every partition), with its
    heartbeat if any; a consumer of several partitions is one row, its pending summed."""
    client = q.client
    layouts = q.partition_keys
    streams = [stream for keys in layouts for stream in keys.streams]
    pipe = client.pipeline(transaction=False)
    for keys in layouts:
        pipe.hgetall(keys.workers)
    for stream in streams:
        pipe.xinfo_groups(stream)
    results = await pipe.execute(raise_on_error=False)
    registries, group_infos = results[:len(layouts)], results[len(layouts):]
    registry: dict[str, dict[str, Any]] = {}
    for registry_raw in registries:
        if isinstance(registry_raw, ResponseError):
            continue
        for name, raw in registry_raw.items():
            try:
                beat = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            known = registry.get(_text(name))
            if known is None or int(beat.get("last_seen_ms") or 0) > int(
                    known.get("last_seen_ms") or 0):
                registry[_text(name)] = beat
    groups = sorted({_text(info["name"]) for infos in group_infos
                     if not isinstance(infos, ResponseError) for info in infos})
    pipe = client.pipeline(transaction=False)
    pairs = [(group, stream) for group in groups for stream in streams]
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
