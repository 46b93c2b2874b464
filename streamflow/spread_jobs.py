"""Browsing and steering the jobs of a partitioned queue (``Queue(name, partitions=N)``).

Every partition is a whole queue layout (``{name#i}``), so what ``streamflow.browse``,
``streamflow.locate`` and ``streamflow.control`` do on one layout is done here on the
partition that holds the job, or on each partition and merged:

- **Pages** (``Queue.jobs``) merge the partitions' pages in the order one queue would show
  (level, then stream id; due time; finish time). The cursor holds one position per
  partition, so the next page goes on exactly where each partition stopped; a merged page
  reads up to ``limit`` jobs from every partition (O(N * limit)). Newest-first listings hold
  still as jobs arrive, as one queue's do: a partition not yet shown is pinned at the newest
  job it had when the first page was read.
- **A job by id** is looked for in the partition its id routes to (``route(job_id=...)``),
  or that of ``key=`` when given, then in the others: a job added with a ``key`` lives in the
  key's partition, and a job added with neither key nor id went round-robin. Ids of the form
  ``<level>:<entry id>`` are stream ids, unique within a partition only: pass ``partition=``
  (the listing gives each job's) to be sure of the job.
- **Actions** (retry, cancel, remove, promote, reschedule, update) run on the partition that
  holds the job, with that partition's own atomic scripts.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
import orjson

from .browse import STATES, JobPage, JobView
from .errors import JobNotFound

CURSOR_PREFIX = "p1."
_DONE = False
"""A partition's place in a merged cursor once it has nothing more to show."""

Position = str | None | bool


def spans(queue: Any) -> bool:
    """Whether ``queue`` is a handle on a whole partitioned queue (not one partition of it)."""
    return int(getattr(queue, "partitions", 1)) > 1 and \
        getattr(queue, "partition_index", None) is None


def tagged(view: JobView, partition: int | None) -> JobView:
    """``view`` naming the partition that holds it."""
    return view if partition is None or view.partition == partition else \
        replace(view, partition=partition)


def pick(queue: Any, partition: int | None) -> Any | None:
    """The handle ``partition=`` names: a partition of ``queue``, or None for ``queue`` itself
    (no ``partition=``, or the one partition a plain queue or a partition handle is)."""
    if partition is None:
        return None
    if spans(queue):
        return queue.partition(partition)
    own = getattr(queue, "partition_index", None)
    if partition == (own or 0):
        return None
    raise ValueError(f"partition {partition} does not exist: "
                     + (f"this handle is partition {own} of queue {queue.name}"
                        if own is not None else f"queue {queue.name} is not partitioned"))


def encode_cursor(positions: list[Position]) -> str:
    """A merged cursor: each partition's own cursor (None: from the start; False: done)."""
    raw = orjson.dumps(positions)
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, partitions: int) -> list[Position]:
    """The per-partition positions of a merged cursor (all None for the first page)."""
    if not cursor:
        return [None] * partitions
    bad = ValueError(f"bad cursor {cursor!r}: not a cursor of this partitioned queue "
                     f"({partitions} partitions); start again without one")
    if not cursor.startswith(CURSOR_PREFIX):
        raise bad
    body = cursor[len(CURSOR_PREFIX):]
    try:
        positions = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(positions, list) or len(positions) != partitions or not all(
            p is None or p is False or isinstance(p, str) for p in positions):
        raise bad
    return positions


def _entry_key(entry_id: str | None) -> tuple[int, int]:
    ms, _, seq = (entry_id or "0-0").partition("-")
    return int(ms or 0), int(seq or 0)


def order_key(state: str, levels: tuple[str, ...], newest_first: bool
              ) -> Callable[[JobView], Any]:
    """The order one partition lists ``state`` in, as a sort key (see ``browse.Pager``).

    Jobs that tie (one due time in two partitions) come partition by partition; a merge only
    needs each partition's jobs to keep their own order, which it always does."""
    sign = -1 if newest_first else 1

    def level_of(view: JobView) -> int:
        return levels.index(view.level) if view.level in levels else len(levels)

    if state == "waiting":
        return lambda v: (level_of(v), *(sign * part for part in _entry_key(v.entry_id)))
    if state == "active":  # the pending list's order, oldest first
        return lambda v: (level_of(v), *_entry_key(v.entry_id))
    if state == "delayed":
        return lambda v: (sign * (v.due_ms or 0),)
    return lambda v: tuple(sign * part for part in _entry_key(v.entry_id))


def position_after(view: JobView, state: str) -> str:
    """A partition's own cursor that goes on right after ``view``."""
    if state in ("waiting", "active"):
        return f"{view.level}:{view.entry_id}"
    if state == "delayed":
        return f"{view.due_ms or 0}:{view.id}"
    return str(view.entry_id)


def position_before(view: JobView, state: str) -> str:
    """A partition's own cursor whose page starts with ``view`` (newest-first listings)."""
    if state == "delayed":
        return f"{view.due_ms or 0}:{view.id}\x00"  # the member sorts just above the id
    ms, seq = _entry_key(view.entry_id)
    after = f"{ms}-{seq + 1}"
    return f"{view.level}:{after}" if state == "waiting" else after


async def merged_page(queue: Any, state: str, *, level: str | None, cursor: str | None,
                      limit: int, newest_first: bool, name: str | None,
                      group: str | None) -> JobPage:
    """One page of ``state`` over every partition of ``queue``, merged (module docstring)."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; states are {', '.join(STATES)}")
    if limit < 1:
        raise ValueError("limit must be >= 1")
    positions = decode_cursor(cursor, queue.partitions)
    pages: dict[int, JobPage] = {}

    async def read(i: int, position: str | None) -> None:
        pages[i] = await queue.partition(i).jobs(
            state, level=level, cursor=position, limit=limit, newest_first=newest_first,
            name=name, group=group)

    try:
        async with anyio.create_task_group() as tg:  # the partitions' round trips overlap
            for i, position in enumerate(positions):
                if position is not _DONE:
                    tg.start_soon(read, i, position if isinstance(position, str) else None)
    except BaseExceptionGroup as failures:  # raised as itself: a bad level is a ValueError
        error: BaseException = failures
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None
    key = order_key(state, tuple(queue.keys.levels), newest_first)
    merged = heapq.merge(*([(key(view), i, view) for view in page.jobs]
                           for i, page in sorted(pages.items())),
                         key=lambda item: (item[0], item[1]))
    taken: list[JobView] = []
    used = dict.fromkeys(pages, 0)
    for _, i, view in merged:
        if len(taken) >= limit:
            break
        taken.append(view)
        used[i] += 1
    for i, page in pages.items():
        if used[i] == len(page.jobs):
            positions[i] = page.next_cursor if page.next_cursor is not None else _DONE
        elif used[i]:
            positions[i] = position_after(page.jobs[used[i] - 1], state)
        elif positions[i] is None and newest_first and state != "active":
            positions[i] = position_before(page.jobs[0], state)  # later arrivals stay out
    more = any(position is not _DONE for position in positions)
    return JobPage(taken, encode_cursor(positions) if more else None)


def search_order(queue: Any, job_id: str, key: str | None) -> list[int]:
    """The partitions to look for ``job_id`` in: the routed one first, then the others."""
    first = int(queue.route(key, job_id))
    return [first, *(i for i in range(queue.partitions) if i != first)]


async def find_job(queue: Any, job_id: str, *, key: str | None = None,
                   partition: int | None = None, group: str | None = None
                   ) -> tuple[Any, JobView] | None:
    """The partition handle that holds ``job_id`` and the job's view, or None."""
    order = [partition] if partition is not None else search_order(queue, job_id, key)
    for i in order:
        view = queue.partition(i)
        found = await view.job(job_id, group=group)
        if found is not None:
            return view, tagged(found, i)
    return None


async def holder(queue: Any, job_id: str, *, key: str | None = None,
                 partition: int | None = None) -> Any:
    """The handle to act on ``job_id`` with: ``queue`` itself for a plain queue or one
    partition, else the partition holding the job (``JobNotFound`` when none does)."""
    if partition is not None:
        return queue.partition(partition)
    if not spans(queue):
        return queue
    found = await find_job(queue, job_id, key=key)
    if found is None:
        raise JobNotFound(f"job {job_id} not found in any of the {queue.partitions} "
                          f"partitions of queue {queue.name} (a finished job is kept while "
                          "its result or dead letter is)")
    return found[0]


async def find_by_index(queue: Any, field: str, value: str, limit: int) -> list[JobView]:
    """Jobs added with ``index={field: value}`` in any partition, newest first."""
    ranked: list[tuple[float, int, str]] = []
    for i in range(queue.partitions):
        part = queue.partition(i)
        rows = await part.client.zrevrange(part.keys.index(field, value), 0, limit - 1,
                                           withscores=True)
        ranked += [(-float(score), i, raw.decode() if isinstance(raw, bytes) else str(raw))
                   for raw, score in rows]
    views: list[JobView] = []
    for _, i, job_id in sorted(ranked)[:limit]:
        view = await queue.partition(i).job(job_id)
        if view is not None:
            views.append(tagged(view, i))
    return views


async def job_logs(queue: Any, job_id: str, *, key: str | None, partition: int | None,
                   limit: int) -> list[str]:
    """The log of ``job_id``: from the partition holding it (else the first that has one)."""
    order = [partition] if partition is not None else search_order(queue, job_id, key)
    for i in order:
        lines: list[str] = await queue.partition(i).job_logs(job_id, limit=limit)
        if lines:
            return lines
    return []
