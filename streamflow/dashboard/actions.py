"""Actions: POST forms with a CSRF token; refused in read-only mode.

A refusal of the library (``StreamflowError``: the job is active, unknown...) comes back as a
one-line message on the next page, never as a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import orjson
from redis.exceptions import RedisError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import StreamflowError
from ..queue import Queue
from . import jobs_api
from .jobs_api import UNSET, NotAvailable
from .masking import unmask
from .pages import partition_of
from .security import USER_COOKIE, csrf_ok
from .state import UnknownQueue
from .web import config_of, dashboard_of, redirect, render

log = logging.getLogger("streamflow.dashboard")
CLEAN_STATES = ("completed", "dead", "delayed")


async def _guard(request: Request) -> tuple[Queue, FormData] | Response:
    """The queue and form of an action, or the page that refuses it."""
    if config_of(request).read_only:
        return render(request, "message.html", {
            "title": "Read-only", "message": "this dashboard is read-only"}, 403)
    form = await request.form()
    csrf = form.get("csrf")
    if not csrf_ok(request, csrf if isinstance(csrf, str) else None):
        return render(request, "message.html", {
            "title": "Refused", "message": "the form's CSRF token is missing or stale; "
            "reload the page and try again"}, 403)
    try:
        q = await dashboard_of(request).queue(request.path_params["queue"])
    except UnknownQueue as exc:
        return render(request, "message.html", {"title": "Unknown queue",
                                                "message": str(exc)}, 404)
    return q, form


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _outcome(request: Request, target: str,
                   fn: Callable[[], Awaitable[str]]) -> Response:
    try:
        message = await fn()
    except (StreamflowError, NotAvailable, LookupError, ValueError) as exc:
        return redirect(request, target, str(exc).splitlines()[0] if str(exc) else
                        type(exc).__name__, error=True)
    except RedisError as exc:
        return redirect(request, target, f"Redis error: {exc}", error=True)
    except Exception:
        log.exception("dashboard action failed")
        return redirect(request, target, "the action failed; the server log has the details",
                        error=True)
    return redirect(request, target, message)


def _queue_url(request: Request, q: Queue) -> str:
    return str(request.url_for("queue", queue=q.name))


async def queue_action(request: Request) -> Response:
    guarded = await _guard(request)
    if isinstance(guarded, Response):
        return guarded
    q, form = guarded
    action = request.path_params["action"]
    target = _queue_url(request, q)

    async def run() -> str:
        if action == "pause":
            await q.pause()
            return f"{q.name} paused"
        if action == "resume":
            await q.resume()
            return f"{q.name} resumed"
        if action == "retry-dead":
            return f"{await q.retry_dead()} dead jobs put back on {q.name}"
        if action == "drain":
            if _field(form, "confirm") != q.name:
                raise ValueError(f"type the queue name {q.name!r} to drain it")
            return f"{await q.drain(config_of(request).worker_group)} waiting and delayed " \
                   f"jobs removed from {q.name}"
        if action == "clean":
            state = _field(form, "state")
            if state not in CLEAN_STATES:
                raise ValueError(f"clean needs a state: {', '.join(CLEAN_STATES)}")
            try:
                minutes = float(_field(form, "older_than_min") or 0)
            except ValueError:
                raise ValueError("older than: a number of minutes") from None
            if minutes < 0:
                raise ValueError("older than: a number of minutes, 0 or more")
            removed = await jobs_api.clean(q, state, minutes * 60)
            return f"{removed} {state} jobs removed from {q.name}"
        raise ValueError(f"unknown queue action {action!r}")

    return await _outcome(request, target, run)


def actor_of(request: Request, form: FormData) -> str:
    """Who acts, for the audit trail: the name typed (or given at login) and the address."""
    name = _field(form, "actor") or request.cookies.get(USER_COOKIE, "") or "anonymous"
    host = request.client.host if request.client else "?"
    return f"{name[:80]} (dashboard, {host})"


async def job_action(request: Request) -> Response:
    guarded = await _guard(request)
    if isinstance(guarded, Response):
        return guarded
    q, form = guarded
    action, job_id = _field(form, "action"), _field(form, "job_id")
    entry_id = _field(form, "entry") or None
    partition = partition_of(q, _field(form, "partition") or None)
    target = str(request.url_for("job", queue=q.name, job_id=job_id))
    query = [] if partition is None else [f"partition={partition}"]
    if entry_id and action not in ("retry", "edit"):
        query.append(f"entry={quote(entry_id)}")  # the dead entry is gone once retried
    if query:
        target += "?" + "&".join(query)
    if action == "remove":
        target = _queue_url(request, q)

    async def run() -> str:
        if not job_id:
            raise ValueError("no job id given")
        data: Any = UNSET
        if action == "edit":
            try:
                edited = orjson.loads(_field(form, "data") or "null")
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"the edited payload is not valid JSON: {exc}") from None
            job = await jobs_api.get_job(q, job_id, entry_id, partition)
            if job is None:
                raise LookupError(f"no job {job_id!r} in queue {q.name!r}")
            data = unmask(edited, job.data, config_of(request).sensitive_for(q.name))
        return await jobs_api.act(q, "retry" if action == "edit" else action, job_id,
                                  entry_id=entry_id, data=data, actor=actor_of(request, form),
                                  partition=partition)

    return await _outcome(request, target, run)


routes = [
    Route("/queues/{queue}/actions/job", job_action, methods=["POST"], name="job_action"),
    Route("/queues/{queue}/actions/{action}", queue_action, methods=["POST"],
          name="queue_action"),
]
