"""Job views: any job of a queue by state (paged by stream id or score) or by id.

Cursors are stream entry ids and zset scores, so a page costs O(limit) however long the queue:
page 1,000 of a million waiting jobs reads as much as page 1 (``benchmarks/browse.py``).

Where a job is found, by id:

- ``delayed`` (and retries waiting out their backoff): ZSCORE of the delayed set, O(log n).
- ``held`` (an ordered queue's later job of a key, waiting for the one that runs): its
  envelope in the ``jobs`` hash without a due time, O(1). Listed by no page (per key lists).
- in a level stream (``waiting`` / ``active``): a job added without an id is named
  ``<level>:<entry id>``, which says where it is; a job with an explicit id is located by the
  ``where`` hash (job id -> entry), written by the moves that put it in a stream and deleted by
  those that take it out. Either way one XRANGE + XPENDING of that entry, O(1).
- ``dead`` / ``completed``: the dead-letter and done streams are searched newest first, in
  chunks of ``SCAN_CHUNK`` entries per script call, up to ``SCAN_LIMIT`` entries
  (O(entries looked at)); tracked jobs also have their status record, O(1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.exceptions import ResponseError

from . import scripts
from .keys import QueueKeys
from .protocol import F_KEY

STATES = ("waiting", "active", "delayed", "completed", "dead")
DATA_CAP = 16 * 1024
SCAN_CHUNK = 2000
SCAN_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as an operator sees it; ``data`` is capped at 16 KiB (``data_size`` is the full
    size, ``data_truncated`` says whether ``data`` is the JSON text cut short)."""

    id: str
    name: str
    level: str | None
    state: str
    attempt: int = 1
    enqueued_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    due_ms: int | None = None
    data: Any = None
    data_size: int = 0
    data_truncated: bool = False
    error: str | None = None
    reason: str | None = None
    traceback: str | None = None
    progress: Any = None
    result: Any = None
    trace_id: str | None = None
    entry_id: str | None = None
    consumer: str | None = None
    idle_ms: int | None = None
    deliveries: int | None = None
    index: dict[str, str] = field(default_factory=dict)
    partition: int | None = None
    """The partition holding the job, on a partitioned queue (None: a plain queue)."""
    key: str | None = None
    """The key of a job added with one to an ordered queue (its jobs run one at a time)."""


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``Queue.jobs``; pass ``next_cursor`` back for the next (None: no more)."""

    jobs: list[JobView]
    next_cursor: str | None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, b"", "") else None
    except ValueError:
        return None


def _json(value: Any) -> Any:
    if value in (None, b"", ""):
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return _text(value)


def _data(raw: bytes | None) -> tuple[Any, int, bool]:
    if raw is None:
        return None, 0, False
    if len(raw) > DATA_CAP:
        return raw[:DATA_CAP].decode(errors="replace"), len(raw), True
    return _json(raw), len(raw), False


def entry_ms(entry_id: str) -> int:
    """The time part of a stream entry id."""
    return int(entry_id.partition("-")[0])


def id_less(a: str, b: str) -> bool:
    """Whether stream id ``a`` sorts before ``b``."""
    a_ms, _, a_seq = a.partition("-")
    b_ms, _, b_seq = b.partition("-")
    return (int(a_ms), int(a_seq or 0)) < (int(b_ms), int(b_seq or 0))


def view_from_fields(fields: dict[bytes, bytes], *, state: str, level: str | None,
                     entry_id: str | None, **extra: Any) -> JobView:
    """A view of an envelope (stream entry, delayed record or dead letter)."""
    data, size, truncated = _data(fields.get(b"d"))
    raw_id = fields.get(b"i")
    if raw_id is not None:
        job_id = _text(raw_id)
    elif fields.get(b"x:src") is not None:
        job_id = f"{_text(fields.get(b'x:level', b''))}:{_text(fields[b'x:src'])}"
    else:
        job_id = f"{level}:{entry_id}"
    enqueued = _int(fields.get(b"t"))
    if enqueued is None:
        source = _text(fields[b"x:src"]) if b"x:src" in fields else entry_id
        enqueued = entry_ms(source) if source else None
    traceparent = _text(fields.get(b"tp", b""))
    parts = traceparent.split("-")
    index = _json(fields.get(b"k")) or {}
    values: dict[str, Any] = dict(
        id=job_id, name=_text(fields.get(b"n", b"")), level=level, state=state,
        attempt=_int(fields.get(b"a")) or 1, enqueued_ms=enqueued, data=data, data_size=size,
        data_truncated=truncated, trace_id=parts[1] if len(parts) == 4 else None,
        entry_id=entry_id, index={str(k): str(v) for k, v in index.items()}
        if isinstance(index, dict) else {},
        key=_text(fields[F_KEY]) if F_KEY in fields else None)
    values.update(extra)
    return JobView(**values)


def delayed_view(job_id: str, record: bytes, due: float, keys: QueueKeys) -> JobView:
    """A view of a delayed job from its ``jobs`` hash record ``[level, f1, v1, ...]``."""
    decoded = orjson.loads(record)
    flat = [str(item).encode() for item in decoded[1:]]
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    fields.setdefault(b"i", job_id.encode())
    level = keys.levels[int(decoded[0])] if 0 <= int(decoded[0]) < len(keys.levels) else None
    return view_from_fields(fields, state="delayed", level=level, entry_id=None,
                            due_ms=int(due))


def dead_view(entry_id: str, fields: dict[bytes, bytes]) -> JobView:
    """A view of a dead letter."""
    return view_from_fields(
        fields, state="dead", level=_text(fields.get(b"x:level", b"")) or None,
        entry_id=entry_id, finished_ms=_int(fields.get(b"x:at")) or entry_ms(entry_id),
        error=_text(fields.get(b"x:error", b"")) or None,
        reason=_text(fields.get(b"x:reason", b"")) or None,
        traceback=_text(fields.get(b"x:tb", b""))[-2000:] or None)


def done_view(entry_id: str, fields: dict[bytes, bytes]) -> JobView:
    """A view of a completed job from the ``done`` stream (id, name, duration, result)."""
    finished = entry_ms(entry_id)
    duration = _int(fields.get(b"ms"))
    job_id = _text(fields.get(b"i", b""))
    level, sep, _ = job_id.partition(":")
    return JobView(
        id=job_id, name=_text(fields.get(b"n", b"")), level=level if sep else None,
        state="completed", finished_ms=finished,
        started_ms=finished - duration if duration is not None else None,
        result=_json(fields.get(b"r")), entry_id=entry_id)


def _pairs(flat: Any) -> dict[bytes, bytes]:
    if isinstance(flat, dict):
        return flat
    it = iter(flat)
    return dict(zip(it, it, strict=True))


async def group_floor(client: Any, stream: str, group: str) -> str | None:
    """The group's last-delivered id on ``stream`` (None: no such group or stream)."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:
        return None
    for info in groups:
        if _text(info["name"]) == group:
            return _text(info["last-delivered-id"])
    return None


async def pending_of(client: Any, stream: str, group: str, entry_id: str) -> dict[str, Any] | None:
    """The pending-list record of one entry (consumer, idle, deliveries), or None."""
    try:
        items = await client.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    except ResponseError:
        return None
    if not items:
        return None
    item = items[0]
    return {"consumer": _text(item["consumer"]), "idle_ms": int(item["time_since_delivered"]),
            "deliveries": int(item["times_delivered"])}


async def scan_finished(client: Any, stream: str, job_id: str,
                        limit: int = SCAN_LIMIT) -> tuple[str, dict[bytes, bytes]] | None:
    """The newest entry of a dead or done stream that holds ``job_id``, looking at no more than
    ``limit`` entries."""
    cursor = "+"
    seen = 0
    while cursor and seen < limit:
        found, cursor = await scripts.call(client, scripts.SCRIPTS["find_entry"], [stream],
                                           [job_id, cursor, SCAN_CHUNK])
        seen += SCAN_CHUNK
        if found:
            entry = _text(found)
            rows = await client.xrange(stream, min=entry, max=entry)
            if rows:
                return entry, _pairs(rows[0][1])
        cursor = _text(cursor)
    return None


class Pager:
    """Pages of one queue's jobs by state (``Queue.jobs``)."""

    def __init__(self, client: Any, keys: QueueKeys, group: str) -> None:
        self.client = client
        self.keys = keys
        self.group = group

    async def page(self, state: str, *, level: str | None, cursor: str | None, limit: int,
                   newest_first: bool, name: str | None) -> JobPage:
        """One page; see ``Queue.jobs``."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; states are {', '.join(STATES)}")
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if level is not None and level not in self.keys.levels:
            raise ValueError(f"unknown level {level!r}; levels are {', '.join(self.keys.levels)}")
        jobs: list[JobView] = []
        budget = max(limit * 20, 1000)  # entries looked at when a name filter drops most
        while True:
            if state in ("waiting", "active"):
                batch, cursor = await self._levels(state, level, cursor, limit - len(jobs),
                                                   newest_first)
            elif state == "delayed":
                batch, cursor = await self._delayed(cursor, limit - len(jobs), newest_first)
            else:
                stream = self.keys.done if state == "completed" else self.keys.dead
                batch, cursor = await self._finished(stream, state, cursor, limit - len(jobs),
                                                     newest_first)
            budget -= len(batch)
            jobs += [job for job in batch if name is None or job.name == name]
            if len(jobs) >= limit or cursor is None or budget <= 0:
                return JobPage(jobs, cursor)

    async def _levels(self, state: str, level: str | None, cursor: str | None, limit: int,
                      newest_first: bool) -> tuple[list[JobView], str | None]:
        levels = list(self.keys.levels) if level is None else [level]
        after: str | None = None
        if cursor:
            at, sep, after = cursor.partition(":")
            if not sep or at not in levels:
                raise ValueError(f"bad cursor {cursor!r} for state {state}")
            levels = levels[levels.index(at):]
        jobs: list[JobView] = []
        for name in levels:
            read = self._waiting if state == "waiting" else self._active
            batch, more = await read(name, after, limit - len(jobs), newest_first)
            jobs += batch
            after = None
            if len(jobs) >= limit:
                last = jobs[-1].entry_id
                return jobs, f"{name}:{last}" if (more or name != levels[-1]) else None
        return jobs, None

    async def _waiting(self, level: str, after: str | None, limit: int,
                       newest_first: bool) -> tuple[list[JobView], bool]:
        stream = self.keys.level(level)
        floor = await group_floor(self.client, stream, self.group) or "0-0"
        low = "-" if floor == "0-0" else f"({floor}"
        if newest_first:
            rows = await self.client.xrevrange(stream, max=f"({after}" if after else "+",
                                               min=low, count=limit)
        else:
            start = f"({after}" if after and not id_less(after, floor) else low
            rows = await self.client.xrange(stream, min=start, max="+", count=limit)
        jobs = [view_from_fields(_pairs(fields), state="waiting", level=level,
                                 entry_id=_text(entry)) for entry, fields in rows]
        return jobs, len(rows) == limit

    async def _active(self, level: str, after: str | None, limit: int,
                      newest_first: bool) -> tuple[list[JobView], bool]:
        stream = self.keys.level(level)
        try:
            items = await self.client.xpending_range(
                stream, self.group, min=f"({after}" if after else "-", max="+", count=limit)
        except ResponseError:
            return [], False
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            entry = _text(item["message_id"])
            pipe.xrange(stream, min=entry, max=entry)
        rows = await pipe.execute() if items else []
        jobs = []
        for item, found in zip(items, rows, strict=True):
            entry = _text(item["message_id"])
            fields = _pairs(found[0][1]) if found else {}
            delivered = int(item["time_since_delivered"])
            jobs.append(view_from_fields(
                fields, state="active", level=level, entry_id=entry,
                consumer=_text(item["consumer"]), idle_ms=delivered,
                deliveries=int(item["times_delivered"])))
        return jobs, len(items) == limit

    async def _delayed(self, cursor: str | None, limit: int,
                       newest_first: bool) -> tuple[list[JobView], str | None]:
        score: float | None = None
        member = ""
        if cursor:
            raw_score, _, member = cursor.partition(":")
            try:
                score = float(raw_score)
            except ValueError:
                raise ValueError(f"bad cursor {cursor!r} for state delayed") from None
        picked: list[tuple[str, float]] = []
        offset = 0
        while len(picked) <= limit:
            want = limit - len(picked) + 1
            if newest_first:
                rows = await self.client.zrevrangebyscore(
                    self.keys.delayed, "+inf" if score is None else score, "-inf",
                    start=offset, num=want, withscores=True)
            else:
                rows = await self.client.zrangebyscore(
                    self.keys.delayed, "-inf" if score is None else score, "+inf",
                    start=offset, num=want, withscores=True)
            offset += len(rows)
            for raw, value in rows:
                job = _text(raw)
                if score is not None and value == score and (
                        job >= member if newest_first else job <= member):
                    continue  # the cursor's own score: members up to the cursor were shown
                picked.append((job, value))
            if len(rows) < want:
                break
        more = len(picked) > limit
        picked = picked[:limit]
        records = await self.client.hmget(self.keys.jobs, [job for job, _ in picked]) \
            if picked else []
        jobs = [delayed_view(job, record, value, self.keys)
                for (job, value), record in zip(picked, records, strict=True) if record]
        last = picked[-1] if picked else None
        return jobs, f"{last[1]:.0f}:{last[0]}" if more and last else None

    async def _finished(self, stream: str, state: str, cursor: str | None, limit: int,
                        newest_first: bool) -> tuple[list[JobView], str | None]:
        if newest_first:
            rows = await self.client.xrevrange(stream, max=f"({cursor}" if cursor else "+",
                                               min="-", count=limit)
        else:
            rows = await self.client.xrange(stream, min=f"({cursor}" if cursor else "-",
                                            max="+", count=limit)
        make = done_view if state == "completed" else dead_view
        jobs = [make(_text(entry), _pairs(fields)) for entry, fields in rows]
        return jobs, jobs[-1].entry_id if len(rows) == limit and jobs else None
