"""The webhook ingress: verify, enqueue, answer, in about a millisecond.

``POST /webhooks/razorpay`` reads at most ``max_body_bytes`` (413 past it, decided while
reading; 408 when the body is not in within ``body_timeout``), hands the raw bytes to a
verifier (`RazorpayVerifier` by default: signature, strict JSON, event type, signed
``created_at`` no older than the dedup window, event id format; 400 when refused), then adds one
job named after the event type, carrying the verified body text exactly as signed (the workers
parse it: no amount is ever rounded, no duplicate key silently dropped), on the priority level
the routing table gives, with the event id as the job id: streamflow's dedup mark makes a
redelivered event a no-op (answered 200 with ``"status": "duplicate"``). The answer is 200 once
Redis has stored the entry; 503 when Redis cannot be reached in time, so that Razorpay retries.
``/healthz`` answers while the process runs, ``/readyz`` only while Redis answers PING.

Refusals are counted (the ``webhook.refused`` counter, by reason) and logged at most once per
reason every ``refused_log_interval`` seconds. Slow clients are cut off by the server options
of `consumers.razorpay.server` (header timeout, concurrency limit).

Usage::

    app = create_app(RazorpaySettings(), StreamflowSettings())
    uvicorn.run(app, port=8000, **server_options(settings))

Another provider: ``create_app(settings, verifier=StripeVerifier(...), path="/webhooks/stripe")``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import orjson
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from streamflow import Queue, StreamflowSettings, telemetry
from streamflow.errors import PayloadError, PayloadTooLarge, QueueFull
from streamflow.telemetry import tracing_active

from .deadlines import Sweep, tick_for
from .server import set_header_timeout
from .settings import RazorpaySettings
from .verifier import RazorpayVerifier, Refused, VerifiedEvent, WebhookVerifier

log = logging.getLogger("consumers.razorpay")

TRACER_NAME = "consumers.razorpay"
WEBHOOK_PATH = "/webhooks/razorpay"
REDIS_DOWN = (RedisError, OSError, TimeoutError)
FULL_RETRY_AFTER_S = 30
"""Retry-After of a 503 while Redis is full (workers drain it; Razorpay retries anyway)."""
_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")
_JSON_HEADERS = ((b"content-type", b"application/json"),)
_Extra = tuple[tuple[bytes, bytes], ...]
"""Response headers besides the content type and length."""
_RETRY_AFTER: _Extra = ((b"retry-after", str(FULL_RETRY_AFTER_S).encode()),)


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


class _Deadline:
    """The deadline of one request, which cancels its task when due: `asyncio.timeout`'s job
    (the same ``TimeoutError``, the same care for a cancellation from elsewhere) on a `Sweep`
    instead of a timer of its own."""

    __slots__ = ("_cancelling", "_sweep", "_task", "expired")

    def __init__(self, sweep: Sweep, seconds: float) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI servers run apps in tasks
            raise RuntimeError("the ingress must run in a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._sweep = sweep
        self.expired = False
        sweep.set(self, seconds, _Deadline._expire)

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def move(self, seconds: float) -> None:
        """Expire ``seconds`` from now instead."""
        self._sweep.set(self, seconds, _Deadline._expire)

    def __enter__(self) -> _Deadline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._sweep.clear(self)
        if (self.expired and self._task.uncancel() <= self._cancelling
                and kind is asyncio.CancelledError):
            raise TimeoutError from exc


class RefusalLog:
    """At most one warning per reason every ``interval`` seconds; the next one says how many
    refusals it stands for. Forged requests can be sent faster than logs can be read."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def refused(self, refusal: Refused, size: int) -> None:
        """Log ``refusal`` of a ``size``-byte request, unless its reason was logged lately."""
        now = self._clock()
        if now < self._next.get(refusal.reason, 0.0):
            self._held[refusal.reason] += 1
            return
        self._next[refusal.reason] = now + self._interval
        held = self._held.pop(refusal.reason, 0)
        more = f" (and {held} more since the last report)" if held else ""
        log.warning("webhook refused (%s): %s, %d bytes%s", refusal.reason, refusal.message,
                    size, more)


class WebhookIngress:
    """The request handlers, bound to one queue and one verifier."""

    def __init__(self, settings: RazorpaySettings, queue: Queue, table: PriorityTable,
                 verifier: WebhookVerifier, tracer: trace.Tracer, meter: metrics.Meter,
                 path: str, *, explicit_tracer: bool = False) -> None:
        self.queue = queue
        self.table = table
        self.verifier = verifier
        self.path = path
        self.refused: Counter[str] = Counter()
        """Refusals by reason since start (also exported as the ``webhook.refused`` counter)."""
        self._tracer = tracer
        self._explicit_tracer = explicit_tracer
        """Spans go to a provider given to `create_app`: always made. Otherwise, only while an
        SDK provider is installed globally (a no-op span still costs microseconds)."""
        self._counter = meter.create_counter(
            "webhook.refused", unit="{request}",
            description="Webhook requests refused by the ingress, by reason")
        self._log = RefusalLog(settings.refused_log_interval)
        self._limit = settings.max_body_bytes
        self._body_timeout = settings.body_timeout
        self._attempts = settings.job_attempts
        self._enqueue_timeout = settings.enqueue_timeout
        self._ready_timeout = settings.ready_timeout
        self._deadlines = Sweep(tick_for(self._body_timeout, self._enqueue_timeout))

    def _refuse(self, refusal: Refused, size: int) -> tuple[int, dict[str, object], _Extra]:
        self.refused[refusal.reason] += 1
        self._counter.add(1, {"reason": refusal.reason})
        self._log.refused(refusal, size)
        return refusal.status, {"error": refusal.message}, ()

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None:
            if not _ASCII_DIGITS.fullmatch(declared):
                raise Refused(400, "bad content-length", "content_length")
            if int(declared) > self._limit:
                raise Refused(413, f"body over {self._limit} bytes", "too_large")
        chunks: list[bytes] = []
        size = 0
        while True:  # the caller's deadline bounds the wait (408)
            message = await receive()
            if message["type"] != "http.request":
                raise Refused(400, "client disconnected", "disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise Refused(413, f"body over {self._limit} bytes", "too_large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST`` on the webhook path, as a plain ASGI app (no routing, no middleware: the
        path is served on every request, so it costs only what it does)."""
        if self._explicit_tracer or tracing_active():
            with self._tracer.start_as_current_span(
                    f"POST {self.path}", kind=SpanKind.SERVER,
                    attributes={"http.request.method": "POST",
                                "http.route": self.path}) as span:
                status, content, extra = await self._webhook(scope, receive, span)
                span.set_attribute("http.response.status_code", status)
        else:
            status, content, extra = await self._webhook(scope, receive, None)
        body = orjson.dumps(content)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON_HEADERS, (b"content-length", b"%d" % len(body)),
                                *extra]})
        await send({"type": "http.response.body", "body": body})

    async def _webhook(self, scope: Scope, receive: Receive,
                       span: trace.Span | None) -> tuple[int, dict[str, object], _Extra]:
        body = b""
        headers = Headers(scope=scope)
        event: VerifiedEvent | None = None
        try:
            # One timer for the request: the body's deadline, then the enqueue's.
            with _Deadline(self._deadlines, self._body_timeout) as deadline:
                body = await self._read_body(headers, receive)
                event = self.verifier.verify(body, headers, time.time())
                text = body.decode("utf-8")
                level = self.table.level(event.type)
                if span is not None:
                    span.set_attributes({"webhook.event": event.type,
                                         "webhook.event_id": event.id})
                deadline.move(self._enqueue_timeout)
                job_id = await self.queue.add(event.type, text, priority=level,
                                              job_id=event.id, attempts=self._attempts,
                                              index=event.index, key=event.key)
        except Refused as refusal:
            return self._refuse(refusal, len(body))
        except UnicodeDecodeError:
            return self._refuse(Refused(400, "body is not UTF-8", "malformed"), len(body))
        except PayloadTooLarge as exc:
            return self._refuse(Refused(413, str(exc), "too_large"), len(body))
        except PayloadError as exc:
            return self._refuse(Refused(400, str(exc), "payload"), len(body))
        except QueueFull:
            assert event is not None
            log.warning("webhook %s (%s) not enqueued: Redis is full", event.id, event.type)
            return 503, {"error": "queue full, retry later"}, _RETRY_AFTER
        except REDIS_DOWN as exc:
            if event is None:  # the body's deadline passed
                if not isinstance(exc, TimeoutError):
                    raise
                return self._refuse(Refused(408, f"body not received within "
                                                 f"{self._body_timeout:g} s", "slow_body"),
                                    len(body))
            log.warning("webhook %s (%s) not enqueued, Redis unavailable: %s", event.id,
                        event.type, type(exc).__name__)
            return 503, {"error": "queue unavailable, retry later"}, ()
        return 200, {"status": "queued" if job_id else "duplicate", "event_id": event.id,
                     "priority": level}, ()

    async def ready(self, request: Request) -> Response:
        """``GET /readyz``: 200 while Redis answers PING, else 503."""
        try:
            async with asyncio.timeout(self._ready_timeout):
                await self.queue.ping()
        except REDIS_DOWN as exc:
            return _json(503, {"status": "unavailable", "redis": type(exc).__name__})
        return _json(200, {"status": "ready"})


class _IngressApp(Starlette):
    """Starlette, with ``POST`` on the webhook path handed straight to the ingress: every
    webhook would otherwise go through the middleware stack and the router first."""

    def __init__(self, ingress: WebhookIngress, **options: Any) -> None:
        super().__init__(**options)
        self._ingress = ingress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path")
            if root and path.startswith(root):
                path = path[len(root):]
            if path == self._ingress.path:
                await self._ingress(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the process serves requests."""
    return _json(200, {"status": "ok"})


def create_app(settings: RazorpaySettings, streamflow: StreamflowSettings | None = None, *,
               queue: Queue | None = None, verifier: WebhookVerifier | None = None,
               path: str = WEBHOOK_PATH,
               tracer_provider: trace.TracerProvider | None = None,
               meter_provider: metrics.MeterProvider | None = None) -> Starlette:
    """The ingress ASGI app. A ``queue`` given here stays open after the app stops.

    ``verifier`` defaults to `RazorpayVerifier` with the webhook secret and an event age
    limit of ``max_event_age`` (at most the queue's dedup TTL). Spans and the refusal counter
    go to ``tracer_provider``/``meter_provider``, by default the global ones (as streamflow's).
    The ingress object is ``app.state.ingress``.

    Raises ``ValueError`` when the webhook secret is missing, a route names a level the
    queue does not have, or ``max_event_age`` exceeds the dedup TTL.
    """
    sf = queue.settings if queue is not None else streamflow or settings.streamflow()
    table = PriorityTable(settings.priority_routes, settings.default_priority)
    unknown = table.levels - set(sf.levels)
    if unknown:
        raise ValueError(f"priority routes name unknown levels {sorted(unknown)}; "
                         f"the queue's levels are {sf.levels}")
    if verifier is None:
        max_age = settings.max_event_age or sf.queue.dedup_ttl
        if max_age > sf.queue.dedup_ttl:
            raise ValueError(f"max_event_age {max_age:g} s exceeds the queue's dedup TTL "
                             f"({sf.queue.dedup_ttl:g} s): a replay could be enqueued again")
        verifier = RazorpayVerifier(settings.secret(), max_age=max_age,
                                    max_skew=settings.max_clock_skew)
    target = queue or Queue(settings.queue, settings=sf)
    ingress = WebhookIngress(
        settings, target, table, verifier,
        trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider),
        metrics.get_meter(TRACER_NAME, meter_provider=meter_provider), path,
        explicit_tracer=tracer_provider is not None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if queue is None:
                await target.close()

    app = _IngressApp(
        ingress,
        routes=[
            Route(path, ingress, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", ingress.ready, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.ingress = ingress
    return app


def configure_telemetry(service_name: str) -> None:
    """Export spans and metrics as the ``OTEL_*`` variables ask, when any is set."""
    if any(name.startswith("OTEL_") for name in os.environ):
        telemetry.configure_from_env(service_name=service_name)


def app_from_env() -> Starlette:
    """The app configured from the environment (uvicorn ``--factory`` target)."""
    configure_telemetry("streamflow-razorpay-ingress")
    settings = RazorpaySettings()
    set_header_timeout(settings.header_timeout)  # the server of this process
    app = create_app(settings, settings.streamflow())
    gc.freeze()  # what startup made lives as long as the process: spare it every collection
    return app

