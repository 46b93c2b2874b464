"""One `Queue` per Starlette or FastAPI app: opened at startup, closed at shutdown.

Usage (FastAPI)::

    from fastapi import Depends, FastAPI
    from streamflow import Queue
    from streamflow.integrations.starlette import get_queue, queue_lifespan

    app = FastAPI(lifespan=queue_lifespan("payments"))

    @app.post("/webhooks")
    async def webhook(event: dict, queue: Queue = Depends(get_queue)) -> dict:
        job_id = await queue.add("webhook", event, job_id=event["id"])
        return {"duplicate": job_id is None}

The queue travels in the lifespan state (``request.state.queue``), so several apps in one
process each hold their own. To open it beside resources of your own, enter
``queue_lifespan(...)(app)`` inside your lifespan and yield its state merged with yours.
Needs Starlette (FastAPI brings it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.requests import HTTPConnection

from ..queue import Queue
from ..settings import StreamflowSettings

STATE_KEY = "queue"

Lifespan = Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]


def queue_lifespan(name: str, *, url: str | None = None,
                   settings: StreamflowSettings | None = None, state_key: str = STATE_KEY,
                   check: bool = True) -> Lifespan:
    """A lifespan that opens ``Queue(name)`` for the app and closes it at shutdown.

    With ``check`` (the default) startup fails when Redis does not answer (and the consumer
    group is created), so a wrong URL stops a deployment instead of failing its first request;
    without it, nothing connects before the first request. ``url`` and ``settings`` are
    those of `Queue`; the queue is stored in the lifespan state under ``state_key``.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        queue = Queue(name, url=url, settings=settings)
        try:
            if check:
                await queue.ensure_group()
            yield {state_key: queue}
        finally:
            await queue.close()

    return lifespan


def get_queue(connection: HTTPConnection) -> Queue:
    """The app's queue, for a request or websocket: a FastAPI dependency
    (``Depends(get_queue)``) or a plain call in a Starlette endpoint."""
    queue = getattr(connection.state, STATE_KEY, None)
    if not isinstance(queue, Queue):
        raise RuntimeError(
            "no streamflow Queue in the lifespan state: create the app with "
            "lifespan=queue_lifespan(...)")
    return queue
