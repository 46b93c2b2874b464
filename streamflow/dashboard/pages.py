"""Read-only pages: overview, workers, queue (tabs, paging, search) and job."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..queue import Queue
from . import jobs_api
from .jobs_api import STATES, NotAvailable
from .masking import changes, mask
from .snapshot import consumer_rows, partition_rows, queue_rows
from .web import config_of, dashboard_of, render

CHART_MINUTES = 60
_SEARCH = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*[=:]\s*(\S.*?)\s*$")


async def _chart(queues: list[Queue]) -> dict[str, Any]:
    """Completed/failed per minute over the last hour, summed over ``queues``."""
    now_min = int(time.time() // 60) * 60_000
    since = now_min - (CHART_MINUTES - 1) * 60_000
    completed = [0] * CHART_MINUTES
    failed = [0] * CHART_MINUTES
    stored = False
    for q in queues:
        points = await jobs_api.metrics(q, CHART_MINUTES)
        if points is None:
            continue
        stored = True
        for minute_ms, done, bad in points:
            slot = (minute_ms - since) // 60_000
            if 0 <= slot < CHART_MINUTES:
                completed[slot] += done
                failed[slot] += bad
    return {"stored": stored, "since_ms": since, "completed": completed, "failed": failed}


async def _snapshot(request: Request, names: list[str] | None = None) -> dict[str, Any]:
    dashboard = dashboard_of(request)
    queues = [await dashboard.opened(name) for name in (names or await dashboard.names())]
    rows = await queue_rows(queues, config_of(request).worker_group)
    return {"queues": rows, "chart": await _chart(queues), "now_ms": int(time.time() * 1000)}


async def overview(request: Request) -> Response:
    snapshot = await _snapshot(request)
    return render(request, "overview.html", {"snap": snapshot})


async def api_overview(request: Request) -> Response:
    return JSONResponse(await _snapshot(request))


async def api_queue(request: Request) -> Response:
    q = await dashboard_of(request).queue(request.path_params["queue"])
    snapshot = await _snapshot(request, [q.name])
    snapshot["partitions"] = await partition_rows(q, config_of(request).worker_group)
    return JSONResponse(snapshot)


async def workers(request: Request) -> Response:
    dashboard = dashboard_of(request)
    rows = []
    for name in await dashboard.names():
        rows += await consumer_rows(await dashboard.opened(name))
    return render(request, "workers.html", {"consumers": rows})


async def queue_page(request: Request) -> Response:
    q = await dashboard_of(request).queue(request.path_params["queue"])
    params = request.query_params
    state = params.get("state", "waiting")
    if state not in STATES:
        state = "waiting"
    level = params.get("level") or None
    if level not in q.settings.levels:
        level = None
    name = params.get("name", "").strip() or None
    cursor = params.get("cursor") or None
    partition = partition_of(q, params.get("partition"))
    jobs: list[Any] = []
    next_cursor = None
    unavailable = None
    try:
        jobs, next_cursor = await jobs_api.list_jobs(q, state, level=level, cursor=cursor,
                                                     name=name, partition=partition)
    except NotAvailable as exc:
        unavailable = str(exc)
    except ValueError as exc:  # a cursor of another page (or of a queue since changed)
        unavailable = f"{exc}"
    snapshot = await _snapshot(request, [q.name])
    return render(request, "queue.html", {
        "q": q, "row": snapshot["queues"][0], "snap": snapshot, "state": state,
        "level": level, "name": name or "", "cursor": cursor, "jobs": jobs,
        "next_cursor": next_cursor, "unavailable": unavailable, "states": STATES,
        "browse": jobs_api.BROWSE, "search": "", "partition": partition,
        "partitions": await partition_rows(q, config_of(request).worker_group)})


def partition_of(q: Queue, raw: str | None) -> int | None:
    """The partition a page names (``?partition=``), if it is one of the queue's."""
    if raw is None or not raw.isdigit() or q.partitions == 1:
        return None
    return int(raw) if int(raw) < q.partitions else None


async def search(request: Request) -> Response:
    q = await dashboard_of(request).queue(request.path_params["queue"])
    text = request.query_params.get("q", "").strip()
    results: list[Any] = []
    problem = None
    match = _SEARCH.match(text)
    try:
        if match:
            results = await jobs_api.find(q, match.group(1), match.group(2).strip("\"'"))
        elif text:
            job = await jobs_api.get_job(q, text)
            results = [job] if job is not None else []
        else:
            problem = "type a job id, or a business key such as payment_id = pay_123"
    except NotAvailable as exc:
        problem = str(exc)
    return render(request, "search.html", {"q": q, "search": text, "results": results,
                                           "problem": problem})


async def job_page(request: Request) -> Response:
    q = await dashboard_of(request).queue(request.path_params["queue"])
    job_id = request.path_params["job_id"]
    entry_id = request.query_params.get("entry") or None
    partition = partition_of(q, request.query_params.get("partition"))
    try:
        job = await jobs_api.get_job(q, job_id, entry_id, partition)
    except NotAvailable as exc:
        return render(request, "message.html", {"title": "Job", "message": str(exc)}, 404)
    if job is None:
        return render(request, "message.html", {
            "title": "Job not found",
            "message": f"no job {job_id!r} in queue {q.name!r} (removed, or expired)"}, 404)
    config = config_of(request)
    sensitive = config.sensitive_for(q.name)
    trace_link = (config.trace_url.replace("{trace_id}", job.trace_id)
                  if config.trace_url and job.trace_id else None)
    partition = getattr(job, "partition", None)
    return render(request, "job.html", {
        "q": q, "job": job, "data": mask(job.data, sensitive), "masked": bool(sensitive),
        "result": mask(job.result, sensitive), "progress": mask(job.progress, sensitive),
        "logs": await jobs_api.job_logs(q, job.id, partition),
        "audit": [await audit_row(q, record, sensitive, partition)
                  for record in await jobs_api.audit(q, job.id, partition)],
        "actions": jobs_api.actions_for(job), "trace_link": trace_link, "entry": entry_id,
        "partition": partition})


async def audit_row(q: Queue, record: Any, sensitive: frozenset[str],
                    partition: int | None = None) -> dict[str, Any]:
    """An audit record for display: an edited payload (``d``) masked, and what it changed
    against the original kept in the dead letter ``dead_id``."""
    detail = dict(getattr(record, "detail", {}) or {})
    raw = detail.pop("d", None)
    payload: Any = None
    changed: list[tuple[str, str, str]] = []
    if raw:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = raw
        dead_id = detail.get("dead_id")
        holder = q.partition(partition) if partition is not None else q
        original = await holder.dead(count=1, start=dead_id) if dead_id else []
        if original and original[0]["entry_id"] == dead_id and original[0]["data"]:
            with contextlib.suppress(orjson.JSONDecodeError):
                changed = changes(orjson.loads(original[0]["data"]), payload, sensitive)
    return {"at_ms": getattr(record, "at_ms", None), "actor": getattr(record, "actor", None),
            "action": getattr(record, "action", ""),
            "from_state": getattr(record, "from_state", ""), "detail": detail,
            "payload": mask(payload, sensitive) if payload is not None else None,
            "changes": changed}


routes = [
    Route("/", overview, name="overview"),
    Route("/workers", workers, name="workers"),
    Route("/api/overview", api_overview, name="api_overview"),
    Route("/api/queues/{queue}", api_queue, name="api_queue"),
    Route("/queues/{queue}", queue_page, name="queue"),
    Route("/queues/{queue}/search", search, name="search"),
    Route("/queues/{queue}/jobs/{job_id:path}", job_page, name="job"),
]
