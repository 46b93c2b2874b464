"""The layout of a partitioned queue: its recorded partition count, counts summed over its
partitions, and the per-key order state of one partition."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import PartitionMismatch
from ..inspect import LevelCounts, QueueCounts, read_counts
from ..keys import QueueKeys

PARTITIONS_FIELD = "partitions"
"""Field of the unpartitioned meta hash that holds a partitioned queue's partition count."""


def sum_counts(parts: Sequence[QueueCounts]) -> QueueCounts:
    """The counts of a partitioned queue from those of its partitions."""
    levels: dict[str, LevelCounts] = {}
    for counts in parts:
        for level, c in counts["levels"].items():
            total = levels.setdefault(level, LevelCounts(length=0, waiting=0, pending=0))
            for field in ("length", "waiting", "pending"):
                total[field] += c[field]
    return QueueCounts(
        levels=levels,
        waiting=sum(c["waiting"] for c in parts),
        pending=sum(c["pending"] for c in parts),
        delayed=sum(c["delayed"] for c in parts),
        held=sum(c["held"] for c in parts),
        dead=sum(c["dead"] for c in parts),
        consumers=max((c["consumers"] for c in parts), default=0),
        groups=sorted({g for c in parts for g in c["groups"]}),
        paused=any(c["paused"] for c in parts),
    )


def held_pattern(keys: QueueKeys) -> str:
    """The SCAN pattern of every held list of a queue (partition)."""
    return glob_literal(keys.held("")) + "*"


def glob_literal(text: str) -> str:
    """``text`` with the glob characters (and the hash-tag braces) taken literally."""
    return "".join(f"\\{ch}" if ch in "[]?{}*" else ch for ch in text)


async def scan_batches(client: Any, pattern: str, size: int) -> AsyncIterator[list[Any]]:
    """The keys matching ``pattern``, up to ``size`` at a time."""
    batch: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def clear_key_order(client: Any, keys: QueueKeys) -> int:
    """Delete the key locks and held lists of an ordered queue (partition); how many keys."""
    deleted = int(await client.delete(keys.keylocks))
    async for batch in scan_batches(client, held_pattern(keys), 1000):
        deleted += int(await client.delete(*batch))
    return deleted


async def stored_partitions(client: Any, keys: QueueKeys) -> int:
    """The partition count recorded for a queue (1 when none is)."""
    raw = await client.hget(keys.meta, PARTITIONS_FIELD)
    return int(raw) if raw else 1


def layout_keys(keys: QueueKeys, partitions: int) -> list[QueueKeys]:
    """The keys of every partition of a queue laid out as ``partitions`` (its unpartitioned
    keys for 1)."""
    return [keys] if partitions == 1 else [keys.part(i) for i in range(partitions)]


async def holds_jobs(client: Any, keys: QueueKeys, partitions: int, group: str) -> int:
    """How many jobs (waiting, in flight, delayed, held) the layout of ``partitions`` holds."""
    counts = sum_counts([await read_counts(client, part, group)
                         for part in layout_keys(keys, partitions)])
    return counts["waiting"] + counts["pending"] + counts["delayed"] + counts["held"]


async def check_partition_count(client: Any, keys: QueueKeys, partitions: int,
                                group: str) -> None:
    """Record ``partitions`` for the queue of ``keys`` (its unpartitioned keys); refuse with
    `PartitionMismatch` when another count is recorded and that layout holds jobs (waiting,
    in flight, delayed or held). A plain queue (one partition) records nothing."""
    stored = await stored_partitions(client, keys)
    if stored == partitions:
        return
    if await holds_jobs(client, keys, stored, group):
        raise PartitionMismatch(
            f"queue {keys.queue!r} has {stored} partition(s) holding jobs; it cannot be opened "
            f"with {partitions}: move them with `streamflow partitions migrate "
            f"{keys.queue} --to {partitions}` (docs/scaling.md)")
    if partitions == 1:
        await client.hdel(keys.meta, PARTITIONS_FIELD)
    else:
        await client.hset(keys.meta, PARTITIONS_FIELD, partitions)
