"""The job browsing and control calls the pages use, in one place.

They go to the ``Queue`` job API (``jobs``, ``job``, ``find``, ``retry``...). Where the
installed streamflow predates that API, only dead letters can be listed, opened and retried
(through ``Queue.dead`` and ``Queue.retry_dead``), and the other job pages say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from ..inspect import DeadEntry
from ..queue import Queue

BROWSE = all(hasattr(Queue, name) for name in ("jobs", "job", "find", "retry", "cancel"))
STATES = ("waiting", "active", "delayed", "completed", "dead")
UNSET: Any = object()


class NotAvailable(RuntimeError):
    """Raised when a page needs the job API and this streamflow has none."""

    def __init__(self) -> None:
        super().__init__("job browsing needs a streamflow with the job API (Queue.jobs); "
                         "only dead letters can be browsed here")


@dataclass(frozen=True, slots=True)
class DeadJob:
    """A dead letter shaped like the job API's ``JobView`` (attributes the pages read)."""

    id: str
    name: str
    level: str | None
    entry_id: str
    data: Any
    data_size: int
    error: str | None
    reason: str | None
    traceback: str | None
    finished_ms: int | None
    state: str = "dead"
    attempt: int = 0
    enqueued_ms: int | None = None
    started_ms: int | None = None
    due_ms: int | None = None
    data_truncated: bool = False
    progress: Any = None
    result: Any = None
    trace_id: str | None = None
    consumer: str | None = None
    idle_ms: int | None = None
    deliveries: int | None = None
    index: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrackedJob:
    """The status record of a tracked job, shaped like ``JobView`` (no payload is kept)."""

    id: str
    name: str
    state: str
    attempt: int
    enqueued_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    error: str | None
    reason: str | None
    progress: Any
    result: Any
    level: str | None = None
    entry_id: str | None = None
    data: Any = None
    data_size: int = 0
    data_truncated: bool = False
    traceback: str | None = None
    due_ms: int | None = None
    trace_id: str | None = None
    consumer: str | None = None
    idle_ms: int | None = None
    deliveries: int | None = None
    index: dict[str, str] = field(default_factory=dict)


def _dead_job(entry: DeadEntry) -> DeadJob:
    raw = entry["data"]
    try:
        data = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        data = raw
    return DeadJob(id=entry["job_id"], name=entry["name"] or "?", level=entry["level"] or None,
                   entry_id=entry["entry_id"], data=data, data_size=len(raw or ""),
                   error=entry["error"] or None, reason=entry["reason"],
                   traceback=entry["traceback"] or None, finished_ms=entry["failed_at_ms"])


def _api(q: Queue) -> Any:
    return q  # the job API is typed on Queue once it has it; Any keeps older ones importable


def _where(partition: int | None) -> dict[str, Any]:
    """``partition=`` for the job API when a page names one (older APIs take none)."""
    return {} if partition is None else {"partition": partition}


async def list_jobs(q: Queue, state: str, *, level: str | None, cursor: str | None,
                    name: str | None, limit: int = 50, partition: int | None = None
                    ) -> tuple[list[Any], str | None]:
    """One page of jobs in ``state`` and the cursor of the next page (None: last page); on a
    partitioned queue merged over the partitions, or of ``partition`` alone."""
    if BROWSE:
        page = await _api(q).jobs(state, level=level, cursor=cursor, limit=limit,
                                  newest_first=True, name=name, **_where(partition))
        return list(page.jobs), page.next_cursor
    if state != "dead":
        raise NotAvailable
    start = f"({cursor}" if cursor else "-"
    entries = await q.dead(count=limit + 1, start=start)
    jobs = [_dead_job(e) for e in entries if not name or e["name"] == name]
    more = len(entries) > limit
    return jobs[:limit], entries[limit - 1]["entry_id"] if more else None


async def get_job(q: Queue, job_id: str, entry_id: str | None = None,
                  partition: int | None = None) -> Any | None:
    """The job ``job_id`` in any state (None when unknown); on a partitioned queue looked
    for in every partition, or in ``partition``."""
    if BROWSE:
        return await _api(q).job(job_id, **_where(partition))
    if entry_id:
        entries = await q.dead(count=1, start=entry_id)
        if entries and entries[0]["entry_id"] == entry_id:
            return _dead_job(entries[0])
        return None
    info = await q.get_job(job_id)
    if info is None:
        return None
    return TrackedJob(id=info["id"], name=info["name"], state=info["state"],
                      attempt=info["attempt"], enqueued_ms=info["added_ms"],
                      started_ms=info["started_ms"], finished_ms=info["finished_ms"],
                      error=info["error"], reason=info["reason"], progress=info["progress"],
                      result=info["result"])


async def find(q: Queue, key: str, value: str, limit: int = 100) -> list[Any]:
    """Jobs carrying the business key ``key=value``."""
    if not BROWSE:
        raise NotAvailable
    return list(await _api(q).find(key, value, limit=limit))


async def job_logs(q: Queue, job_id: str, partition: int | None = None) -> list[str]:
    """The job's log lines (none without the job API)."""
    return list(await _api(q).job_logs(job_id, limit=200, **_where(partition))) \
        if BROWSE else []


async def audit(q: Queue, job_id: str, partition: int | None = None) -> list[Any]:
    """Who changed the job (edit and retry), newest first; none without the job API."""
    if not BROWSE or not hasattr(q, "audit"):
        return []
    return list(await _api(q).audit(job_id=job_id, limit=50, **_where(partition)))


async def metrics(q: Queue, minutes: int) -> list[tuple[int, int, int]] | None:
    """(minute ms, completed, failed) per minute over the last ``minutes``; None if this
    streamflow stores no per-minute metrics."""
    if not hasattr(q, "metrics"):
        return None
    points = await _api(q).metrics(since=timedelta(minutes=minutes))
    return [(int(p.minute_ms), int(p.completed), int(p.failed)) for p in points]


async def act(q: Queue, action: str, job_id: str, *, entry_id: str | None = None,
              data: Any = UNSET, actor: str | None = None, partition: int | None = None) -> str:
    """Run a job action (on a partitioned queue in the partition holding the job, or in
    ``partition``); returns a short message. Refusals raise the library's errors."""
    if not BROWSE:
        if action == "retry" and entry_id and data is UNSET:
            moved = await q.retry_dead([entry_id])
            return f"job {job_id} put back on its queue" if moved else \
                f"job {job_id} is no longer dead"
        raise NotAvailable
    api = _api(q)
    if action == "retry":
        kwargs: dict[str, Any] = {"actor": actor, **_where(partition)}
        if data is not UNSET:
            kwargs["data"] = data
        await api.retry(job_id, **kwargs)
        edited = " with the edited payload" if data is not UNSET else ""
        return f"job {job_id} put back on its queue{edited}"
    if action == "cancel":
        return f"job {job_id} {await api.cancel(job_id, actor=actor, **_where(partition))}"
    if action == "remove":
        await api.remove(job_id, actor=actor, **_where(partition))
        return f"job {job_id} removed"
    if action == "promote":
        await api.promote(job_id, actor=actor, **_where(partition))
        return f"job {job_id} promoted"
    raise ValueError(f"unknown job action {action!r}")


async def clean(q: Queue, state: str, older_than_s: float) -> int:
    """Remove jobs in ``state`` older than ``older_than_s``; returns how many."""
    if not hasattr(q, "clean"):
        raise NotAvailable
    return int(await _api(q).clean(state, older_than=older_than_s))


def actions_for(job: Any) -> list[str]:
    """The actions that apply to a job in its state."""
    state = job.state
    if not BROWSE:
        return ["retry"] if state == "dead" else []
    return {"waiting": ["remove"], "active": ["cancel"], "delayed": ["promote", "remove"],
            "dead": ["retry", "edit", "remove"]}.get(state, [])
