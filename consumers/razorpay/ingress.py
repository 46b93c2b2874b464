"""The webhook ingress: verify, enqueue, answer, in about a millisecond.

``POST /webhooks/razorpay`` reads at most ``max_body_bytes`` (413 past it, decided while
reading), checks ``X-Razorpay-Signature`` over the raw bytes (400 when missing or wrong), parses
the JSON (400 when it is not an object with an ``event`` type), then adds one job named after
the event type on the priority level the routing table gives, with ``X-Razorpay-Event-Id`` as
the job id: streamflow's dedup mark makes a redelivered event a no-op (answered 200 with
``"status": "duplicate"``). The answer is 200 once Redis has stored the entry; 503 when Redis
cannot be reached in time, so that Razorpay retries. ``/healthz`` answers while the process runs,
``/readyz`` only while Redis answers PING.

Usage::

    app = create_app(RazorpaySettings(), StreamflowSettings())
    uvicorn.run(app, port=8000)
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from streamflow import Queue, StreamflowSettings, telemetry
from streamflow.errors import PayloadError, PayloadTooLarge

from .sample import EVENT_ID_HEADER
from .settings import RazorpaySettings
from .signature import SIGNATURE_HEADER, verify

log = logging.getLogger("consumers.razorpay")

TRACER_NAME = "consumers.razorpay"
WEBHOOK_PATH = "/webhooks/razorpay"
MAX_EVENT_ID_LENGTH = 128
REDIS_DOWN = (RedisError, OSError, TimeoutError)


class PriorityTable:
    """Event type -> priority level: an exact entry first, then the longest ``prefix*`` entry,
    else the default.

    >>> table = PriorityTable({"refund.*": "high", "refund.failed": "low"}, "normal")
    >>> table.level("refund.created"), table.level("refund.failed"), table.level("x.y")
    ('high', 'low', 'normal')
    """

    def __init__(self, routes: Mapping[str, str], default: str) -> None:
        self.default = default
        self._exact = {event: level for event, level in routes.items() if "*" not in event}
        wildcards = [(event[:-1], level) for event, level in routes.items() if "*" in event]
        for prefix, _ in wildcards:
            if "*" in prefix:
                raise ValueError(f"route {prefix}*: '*' may only end a route, as in 'refund.*'")
        self._prefixes = sorted(wildcards, key=lambda item: -len(item[0]))
        self._cache: dict[str, str] = {}

    @property
    def levels(self) -> set[str]:
        """Every level the table can answer."""
        return {self.default, *self._exact.values(), *(level for _, level in self._prefixes)}

    def level(self, event: str) -> str:
        """The priority level of ``event``."""
        level = self._cache.get(event)
        if level is None:
            level = self._exact.get(event) or next(
                (lvl for prefix, lvl in self._prefixes if event.startswith(prefix)),
                self.default)
            if len(self._cache) < 1024:
                self._cache[event] = level
        return level


def _json(status: int, content: dict[str, object]) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


class WebhookIngress:
    """The request handlers, bound to one queue and one secret."""

    def __init__(self, settings: RazorpaySettings, queue: Queue, table: PriorityTable,
                 tracer: trace.Tracer) -> None:
        self.queue = queue
        self.table = table
        self._tracer = tracer
        self._secret = settings.secret()
        self._limit = settings.max_body_bytes
        self._attempts = settings.job_attempts
        self._enqueue_timeout = settings.enqueue_timeout
        self._ready_timeout = settings.ready_timeout

    async def _read_body(self, request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return _json(400, {"error": "bad content-length"})
            if int(declared) > self._limit:
                return _json(413, {"error": f"body over {self._limit} bytes"})
        body = bytearray()
        try:
            async for chunk in request.stream():
                if len(body) + len(chunk) > self._limit:
                    return _json(413, {"error": f"body over {self._limit} bytes"})
                body += chunk
        except ClientDisconnect:
            return _json(400, {"error": "client disconnected"})
        return bytes(body)

    async def webhook(self, request: Request) -> Response:
        """``POST /webhooks/razorpay``."""
        with self._tracer.start_as_current_span(
                f"POST {WEBHOOK_PATH}", kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "http.route": WEBHOOK_PATH}) as span:
            response = await self._webhook(request, span)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def _webhook(self, request: Request, span: trace.Span) -> Response:
        body = await self._read_body(request)
        if isinstance(body, Response):
            return body
        if not verify(body, request.headers.get(SIGNATURE_HEADER), self._secret):
            log.warning("webhook refused: missing or wrong signature (%d bytes)", len(body))
            return _json(400, {"error": "invalid signature"})
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _json(400, {"error": "body is not JSON"})
        name = event.get("event") if isinstance(event, dict) else None
        if not isinstance(name, str) or not name:
            return _json(400, {"error": "body is not a Razorpay event (no 'event' type)"})
        event_id = request.headers.get(EVENT_ID_HEADER) or "body-" + hashlib.sha256(
            body).hexdigest()[:32]
        if len(event_id) > MAX_EVENT_ID_LENGTH:
            return _json(400, {"error": "event id too long"})
        level = self.table.level(name)
        span.set_attributes({"razorpay.event": name, "razorpay.event_id": event_id})
        try:
            async with asyncio.timeout(self._enqueue_timeout):
                job_id = await self.queue.add(name, event, priority=level, job_id=event_id,
                                              attempts=self._attempts)
        except PayloadTooLarge as exc:
            return _json(413, {"error": str(exc)})
        except PayloadError as exc:
            return _json(400, {"error": str(exc)})
        except REDIS_DOWN as exc:
            log.warning("webhook %s (%s) not enqueued, Redis unavailable: %s", event_id, name,
                        type(exc).__name__)
            return _json(503, {"error": "queue unavailable, retry later"})
        return _json(200, {"status": "queued" if job_id else "duplicate",
                           "event_id": event_id, "priority": level})

    async def ready(self, request: Request) -> Response:
        """``GET /readyz``: 200 while Redis answers PING, else 503."""
        try:
            async with asyncio.timeout(self._ready_timeout):
                await self.queue.ping()
        except REDIS_DOWN as exc:
            return _json(503, {"status": "unavailable", "redis": type(exc).__name__})
        return _json(200, {"status": "ready"})


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the process serves requests."""
    return _json(200, {"status": "ok"})


def create_app(settings: RazorpaySettings, streamflow: StreamflowSettings | None = None, *,
               queue: Queue | None = None,
               tracer_provider: trace.TracerProvider | None = None) -> Starlette:
    """The ingress ASGI app. A ``queue`` given here stays open after the app stops.

    Request spans go to ``tracer_provider``, by default the global one (as streamflow's).

    Raises ``ValueError`` when the webhook secret is missing or a route names a level the
    queue does not have.
    """
    sf = queue.settings if queue is not None else streamflow or settings.streamflow()
    table = PriorityTable(settings.priority_routes, settings.default_priority)
    unknown = table.levels - set(sf.levels)
    if unknown:
        raise ValueError(f"priority routes name unknown levels {sorted(unknown)}; "
                         f"the queue's levels are {sf.levels}")
    target = queue or Queue(settings.queue, settings=sf)
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    ingress = WebhookIngress(settings, target, table, tracer)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if queue is None:
                await target.close()

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, ingress.webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", ingress.ready, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def configure_telemetry(service_name: str) -> None:
    """Export spans and metrics as the ``OTEL_*`` variables ask, when any is set."""
    if any(name.startswith("OTEL_") for name in os.environ):
        telemetry.configure_from_env(service_name=service_name)


def app_from_env() -> Starlette:
    """The app configured from the environment (uvicorn ``--factory`` target)."""
    configure_telemetry("streamflow-razorpay-ingress")
    settings = RazorpaySettings()
    app = create_app(settings, settings.streamflow())
    gc.freeze()  # what startup made lives as long as the process: spare it every collection
    return app
