"""A FastAPI service that turns webhooks into jobs, and the worker that runs them.

    uvicorn examples.fastapi_webhook:app --port 8000            # the ingress
    streamflow worker webhooks --app examples.fastapi_webhook:router  # the worker

    curl -X POST localhost:8000/webhooks -H 'content-type: application/json' \\
         -d '{"id": "evt_1", "event": "payment.captured", "payload": {"amount": 500}}'

The app opens one `Queue` for its lifetime (`queue_lifespan`); the provider's event id is the
job id, so a webhook delivered five times is enqueued once. Redis is found through the usual
``STREAMFLOW_*`` / ``REDIS_URL`` variables.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

from streamflow import Job, Queue, Router
from streamflow.errors import PayloadError
from streamflow.integrations.starlette import get_queue, queue_lifespan
from streamflow.settings import StreamflowSettings

QUEUE = "webhooks"


class Webhook(BaseModel):
    """What the provider posts."""

    id: str = Field(min_length=1, max_length=200)
    event: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    payload: dict[str, Any] = Field(default_factory=dict)


def create_app(queue: str = QUEUE, *, url: str | None = None,
               settings: StreamflowSettings | None = None) -> FastAPI:
    """The ingress; ``url``/``settings`` as for `Queue` (default: the environment)."""
    app = FastAPI(lifespan=queue_lifespan(queue, url=url, settings=settings))

    @app.post("/webhooks", status_code=202)
    async def webhook(hook: Webhook, q: Annotated[Queue, Depends(get_queue)]) -> dict[str, Any]:
        priority = "high" if hook.event.startswith("payment.") else None
        try:
            job_id = await q.add(hook.event, hook.payload, job_id=hook.id, priority=priority)
        except PayloadError as exc:
            raise HTTPException(413, str(exc)) from None
        return {"id": hook.id, "duplicate": job_id is None}

    @app.get("/webhooks/{event_id}")
    async def status(event_id: str, q: Annotated[Queue, Depends(get_queue)]) -> dict[str, Any]:
        info = await q.get_job(event_id)
        if info is None:
            raise HTTPException(404, "unknown or expired event")
        return {"id": event_id, "state": info["state"], "result": info["result"]}

    return app


app = create_app()

router = Router()


@router.handler("payment.captured")
async def payment_captured(job: Job) -> dict[str, Any]:
    return {"amount": job.data.get("amount")}  # here: update the ledger, idempotently by job.id


@router.fallback
async def anything_else(job: Job) -> None:
    return None
