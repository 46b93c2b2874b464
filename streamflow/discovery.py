"""Finding queues and jobs by what a user holds: a queue name, or the job id ``add`` printed.

Read-only and bounded: the CLI uses it to say "unknown queue" (listing the known ones) and to
look up jobs whose status is not tracked (``<level>:<entry id>`` ids, dead letters, pending
entries), from the streams themselves and the capped events stream.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from redis.exceptions import ResponseError

from . import spread_jobs
from .inspect import DeadEntry, JobInfo, PendingEntry, dead_entry, read_job
from .keys import QueueKeys
from .locate import locate
from .protocol import F_ID, F_NAME, EventName, JobState, implicit_job_id

ENTRY_ID = re.compile(r"^\d+-\d+$")
SCAN_LIMIT = 200_000
"""Most keys looked at when listing queues (the CLI's error path must not walk a huge db)."""
EVENTS_LIMIT = 20_000
DEAD_LIMIT = 100_000

_E, _S = EventName, JobState
_STATE_OF_EVENT: dict[str, str] = {
    _E.ADDED: _S.WAITING, _E.WAITING: _S.WAITING, _E.RECLAIMED: _S.WAITING,
    _E.DELAYED: _S.DELAYED, _E.RATE_LIMITED: _S.DELAYED, _E.RETRYING: _S.RETRYING,
    _E.ACTIVE: _S.ACTIVE, _E.PROGRESS: _S.ACTIVE, _E.STALLED: _S.ACTIVE,
    _E.COMPLETED: _S.COMPLETED, _E.DEAD: _S.DEAD, _E.FAILED: _S.DEAD,
}
"""The state a job is in after its latest event."""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _glob(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\{}" else ch for ch in text)


async def queue_exists(client: Any, keys: QueueKeys) -> bool:
    """Whether any key of the queue exists (streams, delayed, dead, events, repeats, meta...)."""
    return bool(await client.exists(
        *keys.streams, keys.delayed, keys.dead, keys.events, keys.done, keys.workers,
        keys.repeat, keys.meta))


async def known_queues(client: Any, prefix: str, *, limit: int = SCAN_LIMIT) -> list[str]:
    """Names of the queues that have keys under ``prefix`` (sorted; looks at ``limit`` keys)."""
    names: set[str] = set()
    start = len(prefix) + 2
    seen = 0
    async for raw in client.scan_iter(match=f"{_glob(prefix)}:\\{{*}}:*", count=1000):
        key = _text(raw)
        end = key.find("}", start)
        if end > start:  # a partition's tag is <queue>#<i>: its queue is listed
            names.add(key[start:end].partition("#")[0])
        seen += 1
        if seen >= limit:
            break
    return sorted(names)


def implicit_id(job_id: str, keys: QueueKeys) -> tuple[str, str] | None:
    """``(level, entry id)`` of a job id of the form ``<level>:<entry id>``, else None."""
    level, sep, entry = job_id.partition(":")
    if sep and level in keys.levels and ENTRY_ID.match(entry):
        return level, entry
    return None


async def find_job(client: Any, keys: QueueKeys, group: str, job_id: str) -> JobInfo | None:
    """The status of ``job_id``: the tracked record when there is one, else what the streams,
    the delayed set, the recent events and the dead letters say; None when nothing knows it."""
    tracked = await read_job(client, keys, job_id)
    if tracked is not None:
        return tracked
    info = JobInfo(id=job_id, name="", state="", attempt=1, progress=None, result=None,
                   error=None, reason=None, added_ms=None, started_ms=None, finished_ms=None)
    if await client.zscore(keys.delayed, job_id) is not None:
        info["state"] = "delayed"
    implicit = implicit_id(job_id, keys)
    if implicit is not None:
        info["state"] = await _stream_state(client, keys, group, *implicit, info)
    await _from_events(client, keys, job_id, info, info["added_ms"])
    if info["state"] and (not info["name"] or info["added_ms"] is None):
        # a queue writes no added/delayed event by default: the job itself tells them
        located = await locate(client, keys, group, job_id)
        if located is not None:
            info["name"] = info["name"] or located.view.name
            if info["added_ms"] is None:
                info["added_ms"] = located.view.enqueued_ms
    if info["state"] in ("", "dead"):
        dead = await find_dead(client, keys, [job_id])
        if dead:
            entry = dead[-1]
            info["state"], info["reason"] = "dead", entry["reason"]
            info["error"], info["finished_ms"] = entry["error"], entry["failed_at_ms"]
            info["name"] = info["name"] or entry["name"] or ""
    if info["state"] == "completed":
        info["result"] = await _result(client, keys, job_id)
    return info if info["state"] else None


async def find_queue_job(queue: Any, job_id: str, key: str | None = None) -> JobInfo | None:
    """`find_job` on a ``Queue`` handle: on a partitioned queue the partition the id (or
    ``key``) routes to first, then the others."""
    group = queue.settings.worker.group
    if queue.partitions == 1:
        return await find_job(queue.client, queue.keys, group, job_id)
    for i in spread_jobs.search_order(queue, job_id, key):
        info = await find_job(queue.client, queue.keys.part(i), group, job_id)
        if info is not None:
            return info
    return None


async def _stream_state(client: Any, keys: QueueKeys, group: str, level: str, entry: str,
                        info: JobInfo) -> str:
    """waiting / active from the level stream and the group; "" once acknowledged or gone."""
    stream = keys.level(level)
    rows = await client.xrange(stream, min=entry, max=entry)
    info["added_ms"] = int(entry.partition("-")[0])
    if not rows:
        return ""
    info["name"] = _text(rows[0][1].get(F_NAME, b""))
    try:
        pending = await client.xpending_range(stream, group, min=entry, max=entry, count=1)
        groups = await client.xinfo_groups(stream)
    except ResponseError:
        return "waiting"
    if pending:
        return "active"
    for info_ in groups:
        if _text(info_["name"]) == group:
            delivered = _text(info_["last-delivered-id"])
            return "waiting" if _entry_key(entry) > _entry_key(delivered) else ""
    return "waiting"


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _from_events(client: Any, keys: QueueKeys, job_id: str, info: JobInfo,
                       added_ms: int | None) -> None:
    """Fill ``info`` from the events about ``job_id`` (bounded walk, newest first, down to
    ``added_ms`` when the add time is known); the newest one sets the state unless the
    streams already told it."""
    needle = job_id.encode()
    last = "+"
    walked = 0
    newest = True
    while walked < EVENTS_LIMIT:
        page = await client.xrevrange(keys.events, max=last, count=1000)
        if not page:
            return
        for event_id, fields in page:
            if fields.get(b"i") != needle:
                continue
            name = _text(fields.get(b"e", b""))
            at = int(_text(event_id).partition("-")[0])
            if newest:
                newest = False
                if not info["state"]:
                    info["state"] = _STATE_OF_EVENT.get(name, name)
                if name in ("completed", "dead"):
                    info["finished_ms"] = at
                if b"err" in fields:
                    info["error"] = _text(fields[b"err"])
                if b"reason" in fields:
                    info["reason"] = _text(fields[b"reason"])
                if b"a" in fields:
                    info["attempt"] = int(fields[b"a"]) + (1 if name == "retrying" else 0)
            if b"n" in fields and not info["name"]:
                info["name"] = _text(fields[b"n"])
            if name in ("added", "delayed") and info["added_ms"] is None:
                info["added_ms"] = at
            if name == "added":
                return
        walked += len(page)
        last = f"({_text(page[-1][0])}"
        if added_ms is not None and _entry_key(last[1:])[0] < added_ms:
            return  # older events are about other jobs


async def _result(client: Any, keys: QueueKeys, job_id: str) -> Any:
    needle = job_id.encode()
    for _, fields in await client.xrevrange(keys.done, count=EVENTS_LIMIT):
        if fields.get(b"i") == needle:
            raw = fields.get(b"r")
            return orjson.loads(raw) if raw else None
    return None


async def find_dead(client: Any, keys: QueueKeys, ids: list[str]) -> list[DeadEntry]:
    """Dead letters named by job id (as ``add`` printed it) or by dead-stream entry id."""
    wanted = set(ids)
    found: list[DeadEntry] = []
    last = "-"
    walked = 0
    while walked < DEAD_LIMIT and wanted:
        page = await client.xrange(keys.dead, min=last, count=1000)
        if not page:
            break
        for entry_id, fields in page:
            entry = dead_entry(entry_id, fields)
            if entry["entry_id"] in wanted or entry["job_id"] in wanted:
                found.append(entry)
        walked += len(page)
        last = f"({_text(page[-1][0])}"
    return found


async def find_queue_dead(queue: Any, ids: list[str]) -> list[tuple[Any, DeadEntry]]:
    """`find_dead` on a ``Queue`` handle: (the handle of the partition holding it, entry) for
    each dead letter named, over every partition of a partitioned queue."""
    handles = [queue] if queue.partitions == 1 else [
        queue.partition(i) for i in range(queue.partitions)]
    return [(handle, entry) for handle in handles
            for entry in await find_dead(queue.client, handle.keys, ids)]


async def pending_job_ids(client: Any, keys: QueueKeys,
                          entries: list[PendingEntry]) -> list[str]:
    """The job id of each pending entry (its ``i`` field, else ``<level>:<entry id>``)."""
    if not entries:
        return []
    pipe = client.pipeline(transaction=False)
    for entry in entries:
        pipe.xrange(keys.level(entry["level"]), min=entry["entry_id"], max=entry["entry_id"])
    out = []
    for entry, rows in zip(entries, await pipe.execute(raise_on_error=False), strict=True):
        raw = rows[0][1].get(F_ID) if isinstance(rows, list) and rows else None
        out.append(_text(raw) if raw else implicit_job_id(entry["level"], entry["entry_id"]))
    return out
