"""Finding one job by id in any state (``Queue.job``); the cost of each lookup is in
``streamflow.browse``'s module docstring."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from . import spread_jobs
from .browse import (
    JobPage,
    JobView,
    Pager,
    _pairs,
    _text,
    dead_view,
    delayed_view,
    done_view,
    entry_ms,
    group_floor,
    id_less,
    pending_of,
    scan_finished,
    view_from_fields,
)
from .joblog import LOG_LINES, read_log
from .keys import QueueKeys
from .settings import StreamflowSettings
from .stored_metrics import MinuteCount, read_metrics

_ENTRY = re.compile(r"^\d+-\d+$")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a job was seen: its view plus what a control script needs to act on it."""

    view: JobView
    level_index: int | None = None
    entry_id: str | None = None
    dead_id: str | None = None


def implicit_location(keys: QueueKeys, job_id: str) -> tuple[int, str] | None:
    """``(level index, entry id)`` of an id of the form ``<level>:<entry id>``."""
    level, sep, entry = job_id.partition(":")
    if sep and level in keys.levels and _ENTRY.match(entry):
        return keys.levels.index(level), entry
    return None


async def locate(client: Any, keys: QueueKeys, group: str, job_id: str) -> Location | None:
    """Where ``job_id`` is now, or None when the queue holds it nowhere."""
    pipe = client.pipeline(transaction=False)
    pipe.zscore(keys.delayed, job_id)
    pipe.hget(keys.jobs, job_id)
    pipe.hget(keys.where, job_id)
    pipe.hgetall(keys.status(job_id))
    due, record, where, status = await pipe.execute()
    if due is not None and record is not None:
        return Location(_with_status(delayed_view(job_id, record, due, keys), status))
    if record is not None:  # an envelope kept without a due time: held behind its key
        view = replace(delayed_view(job_id, record, 0, keys), state="held", due_ms=None)
        return Location(_with_status(view, status, keep_state=True))
    candidates: list[tuple[int, str]] = []
    where = where or (status or {}).get(b"where")  # the add records it in the status record
    if where is not None:
        at, _, spot = _text(where).partition(":")
        if at.isdigit() and int(at) < len(keys.streams):
            candidates.append((int(at), spot))
    implicit = implicit_location(keys, job_id)
    if implicit is not None:
        candidates.append(implicit)
    acked: tuple[int, str] | None = None
    for index, entry in candidates:
        found = await _in_stream(client, keys, group, job_id, index, entry)
        if isinstance(found, Location):
            return replace(found, view=_with_status(found.view, status))
        if found and acked is None:
            acked = (index, entry)
    if where is None and acked is None and (status or {}).get(b"state") in (
            b"waiting", b"active"):  # put in a stream without a where record (a keyed job
        for index, stream in enumerate(keys.streams):  # of an ordered queue): scan for it
            hit = await scan_finished(client, stream, job_id)
            found = await _in_stream(client, keys, group, job_id, index, hit[0]) \
                if hit else False
            if isinstance(found, Location):
                return replace(found, view=_with_status(found.view, status))
    dead = await scan_finished(client, keys.dead, job_id)
    if dead is not None and _ran_since(entry_ms(dead[0]), acked, status):
        dead = None  # a dead letter kept by an edit-and-retry: the job ran again since
    if dead is not None:
        view = _with_status(dead_view(*dead), status, keep_state=True)
        return Location(view, dead_id=dead[0])
    done = await scan_finished(client, keys.done, job_id)
    if done is not None:
        return Location(_with_status(done_view(*done), status, keep_state=True))
    if status:
        fields = {k.decode(): v for k, v in status.items()}
        state = _text(fields.get("state", b"unknown"))
        if state in ("delayed", "retrying", "waiting", "active"):
            state = "unknown"  # the record says so, but the job is not there any more
        view = JobView(id=job_id, name=_text(fields.get("name", b"")), level=None, state=state)
        return Location(_with_status(view, status, keep_state=True))
    return None


def _ran_since(dead_ms: int, acked: tuple[int, str] | None,
               status: dict[bytes, bytes] | None) -> bool:
    """Whether the job ran again after it was dead-lettered at ``dead_ms``."""
    if acked is not None and entry_ms(acked[1]) > dead_ms:
        return True
    started = (status or {}).get(b"started_ms")
    return started is not None and started.isdigit() and int(started) > dead_ms


async def _in_stream(client: Any, keys: QueueKeys, group: str, job_id: str, index: int,
                     entry: str) -> Location | bool:
    """The job at ``entry`` if it is waiting or active there; True when the entry is there but
    delivered and acknowledged; False when the entry is not there (or is another job)."""
    stream = keys.streams[index]
    level = keys.levels[index]
    rows = await client.xrange(stream, min=entry, max=entry)
    if not rows:
        return False
    fields = _pairs(rows[0][1])
    own_id = _text(fields.get(b"i", f"{level}:{entry}".encode()))
    if own_id != job_id:
        return False
    floor = await group_floor(client, stream, group)
    if floor is None or id_less(floor, entry):
        view = view_from_fields(fields, state="waiting", level=level, entry_id=entry)
        return Location(replace(view, id=job_id), index, entry)
    pending = await pending_of(client, stream, group, entry)
    if pending is None:
        return True
    view = view_from_fields(fields, state="active", level=level, entry_id=entry, **pending)
    return Location(replace(view, id=job_id), index, entry)


def _with_status(view: JobView, status: dict[bytes, bytes] | None, *,
                 keep_state: bool = False) -> JobView:
    """``view`` completed with what a tracked job's status record adds (times, progress,
    result, error)."""
    if not status:
        return view
    fields = {k.decode(): v for k, v in status.items()}

    def number(name: str) -> int | None:
        raw = fields.get(name)
        return int(raw) if raw else None

    def decoded(name: str) -> Any:
        raw = fields.get(name)
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _text(raw)

    changes: dict[str, Any] = {}
    if view.started_ms is None and number("started_ms") is not None:
        changes["started_ms"] = number("started_ms")
    if view.finished_ms is None and number("finished_ms") is not None:
        changes["finished_ms"] = number("finished_ms")
    if view.enqueued_ms is None and number("added_ms") is not None:
        changes["enqueued_ms"] = number("added_ms")
    if view.progress is None:
        changes["progress"] = decoded("progress")
    if view.result is None and keep_state:
        changes["result"] = decoded("result")
    if view.error is None and fields.get("error"):
        changes["error"] = _text(fields["error"])
    if view.reason is None and fields.get("reason"):
        changes["reason"] = _text(fields["reason"])
    if not view.name and fields.get("name"):
        changes["name"] = _text(fields["name"])
    return replace(view, **changes)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One operator action on one job (remove, promote, retry with edited data, ...)."""

    entry_id: str
    at_ms: int
    job_id: str
    action: str
    from_state: str
    actor: str | None
    detail: dict[str, str]


class JobReading:
    """The read side of ``Queue``'s per-job API (mixed into ``Queue``)."""

    keys: QueueKeys
    settings: StreamflowSettings
    name: str

    @property
    def client(self) -> Any:
        raise NotImplementedError

    def partition(self, index: int) -> Any:
        """A handle on one partition (``Queue`` has it)."""
        raise NotImplementedError

    async def jobs(self, state: str, *, level: str | None = None, cursor: str | None = None,
                   limit: int = 50, newest_first: bool = True, name: str | None = None,
                   group: str | None = None, partition: int | None = None) -> JobPage:
        """One page of the jobs in ``state`` (waiting, active, delayed, completed, dead).

        Pass the page's ``next_cursor`` back for the next one; each page costs O(limit).
        ``waiting``: per level, highest level first, entries the group has not read yet;
        ``active``: delivered, not yet acknowledged, oldest first; ``delayed``: by due time;
        ``completed``: the ``done`` stream (jobs whose handler returned a result);
        ``dead``: dead letters. ``name`` keeps only jobs of that name. On a partitioned queue
        the partitions' pages are merged (each view names its ``partition``), or only
        ``partition``'s jobs are listed.
        """
        picked = spread_jobs.pick(self, partition)
        if picked is not None:
            one: JobPage = await picked.jobs(state, level=level, cursor=cursor, limit=limit,
                                             newest_first=newest_first, name=name, group=group)
            return one
        if spread_jobs.spans(self):
            return await spread_jobs.merged_page(self, state, level=level, cursor=cursor,
                                                 limit=limit, newest_first=newest_first,
                                                 name=name, group=group)
        pager = Pager(self.client, self.keys, group or self.settings.worker.group)
        page = await pager.page(state, level=level, cursor=cursor, limit=limit,
                                newest_first=newest_first, name=name)
        own = self.keys.partition
        return page if own is None else JobPage(
            [spread_jobs.tagged(view, own) for view in page.jobs], page.next_cursor)

    async def job(self, job_id: str, *, group: str | None = None, key: str | None = None,
                  partition: int | None = None) -> JobView | None:
        """The job ``job_id`` wherever it is in the queue, or None.

        Any id ``add`` returned works, also ``<level>:<entry id>`` of a job added without one.
        On a partitioned queue the partition the id routes to (or that of ``key``, when the
        job was added with one) is read first, then the others; ``partition=`` reads only
        that one (an id ``<level>:<entry id>`` can exist in two partitions).
        """
        spread_jobs.pick(self, partition)
        if spread_jobs.spans(self):
            found = await spread_jobs.find_job(self, job_id, key=key, partition=partition,
                                               group=group)
            return found[1] if found else None
        located = await locate(self.client, self.keys, group or self.settings.worker.group,
                               job_id)
        return spread_jobs.tagged(located.view, self.keys.partition) if located else None

    async def find(self, field: str, value: str, *, limit: int = 100) -> list[JobView]:
        """Every job still held that was added with ``index={field: value}``, newest first."""
        if spread_jobs.spans(self):
            return await spread_jobs.find_by_index(self, field, value, limit)
        raw = await self.client.zrevrange(self.keys.index(field, value), 0, limit - 1)
        views = []
        for job_id in raw:
            view = await self.job(_text(job_id))
            if view is not None:
                views.append(view)
        return views

    async def job_logs(self, job_id: str, *, limit: int = LOG_LINES, key: str | None = None,
                       partition: int | None = None) -> list[str]:
        """The last ``limit`` lines ``job.log`` wrote for ``job_id`` (``<ms> <text>``)."""
        picked = spread_jobs.pick(self, partition)
        if picked is not None or spread_jobs.spans(self):
            return await spread_jobs.job_logs(self, job_id, key=key, partition=partition,
                                              limit=limit)
        return await read_log(self.client, self.keys, job_id, limit)

    async def metrics(self, *, since: datetime | timedelta | float | None = None
                      ) -> list[MinuteCount]:
        """Completed and failed (dead-lettered) jobs per minute, oldest first (default: the
        whole stored window, 24 h); summed over the partitions of a partitioned queue."""
        window = int(self.settings.queue.metrics_window * 1000)
        layouts = [self.keys.part(i) for i in range(getattr(self, "partitions", 1))] \
            if spread_jobs.spans(self) else [self.keys]
        parts = [await read_metrics(self.client, keys, since=since, window_ms=window)
                 for keys in layouts]
        return [MinuteCount(points[0].minute_ms, sum(p.completed for p in points),
                            sum(p.failed for p in points)) for points in zip(*parts, strict=False)]

    async def audit(self, job_id: str | None = None, limit: int = 100, *,
                    partition: int | None = None) -> list[AuditRecord]:
        """Operator actions on jobs, newest first; only those on ``job_id`` when given (looks
        at the whole capped audit stream; of every partition, or of ``partition``)."""
        picked = spread_jobs.pick(self, partition)
        if picked is not None:
            return list(await picked.audit(job_id, limit))
        if spread_jobs.spans(self):
            merged: list[AuditRecord] = []
            for i in range(getattr(self, "partitions", 1)):
                merged += await self.partition(i).audit(job_id, limit)
            return sorted(merged, key=lambda r: (r.at_ms, r.entry_id), reverse=True)[:limit]
        out: list[AuditRecord] = []
        cursor = "+"
        while len(out) < limit:
            rows = await self.client.xrevrange(self.keys.audit, max=cursor, min="-",
                                               count=500)
            for entry, raw in rows:
                fields = {_text(k): _text(v) for k, v in raw.items()}
                if job_id is not None and fields.get("i") != job_id:
                    continue
                out.append(AuditRecord(
                    entry_id=_text(entry), at_ms=int(fields.pop("at", 0) or 0),
                    job_id=fields.pop("i", ""), action=fields.pop("act", ""),
                    from_state=fields.pop("from", ""), actor=fields.pop("by", "") or None,
                    detail=fields))
                if len(out) >= limit:
                    break
            if len(rows) < 500:
                break
            cursor = f"({_text(rows[-1][0])}"
        return out
