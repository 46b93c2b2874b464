"""A plain (sync) Django view that enqueues webhooks with `SyncQueue`.

`SyncQueue` keeps one connection pool per process on a background event loop, so a sync view
under WSGI (gunicorn, uWSGI, runserver) pays one round trip per webhook and no connect. The
worker side is any ``streamflow worker webhooks --app ...`` process.
"""

from __future__ import annotations

import functools
import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from streamflow.errors import PayloadError
from streamflow.integrations.sync import SyncQueue


@functools.cache
def webhook_queue() -> SyncQueue:
    """The process's queue, opened on first use (after a pre-forking server forked)."""
    return SyncQueue(settings.STREAMFLOW_QUEUE, url=settings.STREAMFLOW_REDIS_URL)


@csrf_exempt  # a provider's webhook carries a signature, not a CSRF token
@require_POST
def webhook(request: HttpRequest) -> JsonResponse:
    """Enqueue the event once per provider id: 202, or 400 on a body that is not an event."""
    try:
        event = json.loads(request.body)
        event_id, name = str(event["id"]), str(event["event"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "expected JSON with id and event"}, status=400)
    try:
        job_id = webhook_queue().add(name, event.get("payload"), job_id=event_id)
    except PayloadError as exc:
        return JsonResponse({"error": str(exc)}, status=413)
    return JsonResponse({"id": event_id, "duplicate": job_id is None}, status=202)
