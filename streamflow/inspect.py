"""Read-only views of a queue (counts, pending entries, dead letters), shared by the CLI."""

from __future__ import annotations

from typing import Any, TypedDict

import orjson
from redis.exceptions import ResponseError

from .codec import DEAD_PREFIX
from .keys import QueueKeys


class LevelCounts(TypedDict):
    """One priority stream as seen by one consumer group."""

    length: int
    waiting: int
    pending: int


class QueueCounts(TypedDict):
    """Counts of a queue for one consumer group."""

    levels: dict[str, LevelCounts]
    waiting: int
    pending: int
    delayed: int
    held: int
    """Jobs of an ordered queue held back behind an earlier job of their key (not in
    ``waiting``: none of them can start before that job ends)."""
    dead: int
    consumers: int
    groups: list[str]
    paused: bool


class DeadEntry(TypedDict):
    """A dead-lettered job."""

    entry_id: str
    job_id: str
    name: str | None
    reason: str
    error: str
    traceback: str
    failed_at_ms: int
    level: str
    data: str | None


class JobInfo(TypedDict):
    """The status of a tracked job (a caller-given id, or ``track=True``)."""

    id: str
    name: str
    state: str
    attempt: int
    progress: Any
    result: Any
    error: str | None
    reason: str | None
    added_ms: int | None
    started_ms: int | None
    finished_ms: int | None


class RepeatInfo(TypedDict):
    """A repeatable job and its last scheduled tick."""

    key: str
    name: str
    cron: str | None
    tz: str
    every_ms: int | None
    limit: int | None
    end_ms: int | None
    last_tick_ms: int | None
    ticks: int


class PendingEntry(TypedDict):
    """One entry of a pending list (delivered, not yet acknowledged)."""

    level: str
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_counts(client: Any, keys: QueueKeys, group: str) -> QueueCounts:
    """One pipeline: XINFO GROUPS + XLEN per level, ZCARD delayed, HLEN jobs, XLEN dead, paused
    flag.

    ``held`` is the envelopes of the jobs hash that are not in the delayed set: the hash holds
    those of delayed and of held jobs only (ordered queues), so this costs nothing on the add
    path. Jobs moving between the two reads can put it off by those few for one read.
    """
    pipe = client.pipeline(transaction=False)
    for stream in keys.streams:
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
    pipe.zcard(keys.delayed)
    pipe.hlen(keys.jobs)
    pipe.xlen(keys.dead)
    pipe.hget(keys.meta, "paused")
    results = await pipe.execute(raise_on_error=False)
    levels: dict[str, LevelCounts] = {}
    group_names: set[str] = set()
    consumers = 0
    for result in results:
        if isinstance(result, ResponseError) and "no such key" not in str(result):
            raise result
    for i, level in enumerate(keys.levels):
        length, groups = results[2 * i], results[2 * i + 1]
        length = 0 if isinstance(length, ResponseError) else int(length)
        groups = [] if isinstance(groups, ResponseError) else groups
        waiting, pending = length, 0
        for info in groups:
            name = _text(info["name"])
            group_names.add(name)
            if name != group:
                continue
            pending = int(info["pending"])
            consumers = max(consumers, int(info["consumers"]))
            lag = info.get("lag")
            waiting = int(lag) if lag is not None else max(
                length - pending - int(info.get("entries-read") or 0), 0)
        levels[level] = LevelCounts(length=length, waiting=waiting, pending=pending)
    delayed, envelopes, dead, paused = results[-4:]
    return QueueCounts(
        levels=levels,
        waiting=sum(c["waiting"] for c in levels.values()),
        pending=sum(c["pending"] for c in levels.values()),
        delayed=int(delayed),
        held=max(int(envelopes) - int(delayed), 0),
        dead=int(dead),
        consumers=consumers,
        groups=sorted(group_names),
        paused=paused == b"1",
    )


def dead_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadEntry:
    """A dead-letter stream entry as a ``DeadEntry``."""
    def get(name: bytes) -> str | None:
        value = fields.get(name)
        return value.decode(errors="replace") if value is not None else None
    entry = entry_id.decode()
    return DeadEntry(
        entry_id=entry,
        job_id=get(b"i") or f"{get(DEAD_PREFIX + b'level')}:{get(DEAD_PREFIX + b'src')}",
        name=get(b"n"),
        reason=get(DEAD_PREFIX + b"reason") or "unknown",
        error=get(DEAD_PREFIX + b"error") or "",
        traceback=get(DEAD_PREFIX + b"tb") or "",
        failed_at_ms=int(get(DEAD_PREFIX + b"at") or entry.partition("-")[0]),
        level=get(DEAD_PREFIX + b"level") or "",
        data=get(b"d"),
    )


async def read_job(client: Any, keys: QueueKeys, job_id: str) -> JobInfo | None:
    """The status record of ``job_id``, or None (untracked, unknown, or expired)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.status(job_id))
    pipe.zscore(keys.delayed, job_id)
    raw, due = await pipe.execute()
    if not raw:
        return None
    fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
    state = fields.get("state", "unknown")
    if state in ("delayed", "retrying") and due is None:
        state = "waiting"  # promoted since; the worker marks it active when it starts

    def number(name: str) -> int | None:
        return int(fields[name]) if fields.get(name) else None

    def decoded(name: str) -> Any:
        value = fields.get(name)
        return orjson.loads(value) if value else None

    return JobInfo(
        id=job_id, name=fields.get("name", ""), state=state,
        attempt=number("attempt") or 1, progress=decoded("progress"), result=decoded("result"),
        error=fields.get("error"), reason=fields.get("reason"), added_ms=number("added_ms"),
        started_ms=number("started_ms"), finished_ms=number("finished_ms"))


async def read_dead(client: Any, keys: QueueKeys, count: int, start: str = "-") -> list[DeadEntry]:
    """Up to ``count`` dead-lettered jobs from ``start``, oldest first."""
    entries = await client.xrange(keys.dead, min=start, count=count)
    return [dead_entry(entry_id, fields) for entry_id, fields in entries]


async def read_pending(client: Any, keys: QueueKeys, group: str, *, consumer: str | None = None,
                       min_idle_ms: int = 0, count: int = 100) -> list[PendingEntry]:
    """Pending entries of every level, optionally of one consumer and idle at least so long."""
    pipe = client.pipeline(transaction=False)
    for stream in keys.streams:
        pipe.xpending_range(stream, group, min="-", max="+", count=count,
                            consumername=consumer, idle=min_idle_ms or None)
    out: list[PendingEntry] = []
    for level, result in zip(keys.levels, await pipe.execute(raise_on_error=False), strict=True):
        if isinstance(result, ResponseError):
            continue
        for item in result:
            out.append(PendingEntry(
                level=level, entry_id=_text(item["message_id"]), consumer=_text(item["consumer"]),
                idle_ms=int(item["time_since_delivered"]),
                deliveries=int(item["times_delivered"])))
    return out[:count]


async def read_pending_summary(client: Any, keys: QueueKeys, group: str) -> dict[str, Any]:
    """XPENDING summary per level: count, smallest and largest id, count per consumer."""
    pipe = client.pipeline(transaction=False)
    for stream in keys.streams:
        pipe.xpending(stream, group)
    summary: dict[str, Any] = {}
    for level, result in zip(keys.levels, await pipe.execute(raise_on_error=False), strict=True):
        if isinstance(result, ResponseError):
            summary[level] = {"pending": 0, "min": None, "max": None, "consumers": {}}
            continue
        summary[level] = {
            "pending": int(result["pending"]),
            "min": _text(result["min"]) if result["min"] else None,
            "max": _text(result["max"]) if result["max"] else None,
            "consumers": {_text(c["name"]): int(c["pending"]) for c in result["consumers"]},
        }
    return summary
