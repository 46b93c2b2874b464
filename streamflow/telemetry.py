"""Tracing: span names, messaging attributes, the W3C trace context carried in each entry.

Uses the OpenTelemetry API only; with no SDK configured ``tracing_active()`` is false, the
worker skips ``process_span`` and ``publish_span`` returns an empty carrier at once.

The hot path avoids the API's conveniences that cost more than the span itself: spans are
started with ``tracer.start_span(context=parent, attributes=...)`` (no generator context
managers stacked three deep), the parent context of a ``traceparent`` is parsed by hand and
cached (a bulk add gives thousands of entries the same one) and the carrier is formatted from
the span context instead of going through a propagator.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from .connection import redact

log = logging.getLogger("streamflow.telemetry")

SYSTEM = "redis_streams"
ATTR_SYSTEM = "messaging.system"
ATTR_OPERATION = "messaging.operation.type"
ATTR_OPERATION_NAME = "messaging.operation.name"
ATTR_DESTINATION = "messaging.destination.name"
ATTR_MESSAGE_ID = "messaging.message.id"
ATTR_GROUP = "messaging.consumer.group.name"
ATTR_CLIENT_ID = "messaging.client.id"
ATTR_BATCH_COUNT = "messaging.batch.message_count"
ATTR_JOB_NAME = "streamflow.job.name"
ATTR_ATTEMPT = "streamflow.job.attempt"
ATTR_LEVEL = "streamflow.job.priority"

TRACER_NAME = "streamflow"
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_override: trace.TracerProvider | None = None
_tracer: trace.Tracer = trace.get_tracer(TRACER_NAME)
_drop_unsampled = False
"""True when the provider's sampler is the SDK's default ParentBased one, which never samples
the child of an unsampled remote parent: ``process_span`` then skips the SDK for such jobs."""


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Record spans with ``provider`` instead of the global one (``None``: back to global).

    For tests and embedders that keep several providers; most programs set the global provider
    (``configure_from_env`` or ``opentelemetry.trace.set_tracer_provider``).
    """
    global _override, _tracer, _drop_unsampled
    _override = provider
    _tracer = (provider.get_tracer(TRACER_NAME) if provider is not None
               else trace.get_tracer(TRACER_NAME))
    _drop_unsampled = _never_samples_unsampled_parents(provider)


def tracing_active() -> bool:
    """True when an SDK tracer provider is installed (spans are recorded).

    Also binds the module's tracer to the real provider, skipping the API's proxy on every span.
    """
    global _tracer, _drop_unsampled
    if _override is None and not _PROVIDER_FROM_ENV and getattr(
            trace, "_TRACER_PROVIDER", True) is None:
        return False  # no provider set: skip the API's lookup, which reads the environment
    provider = _override if _override is not None else trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    if _override is None and isinstance(_tracer, trace.ProxyTracer):
        _tracer = provider.get_tracer(TRACER_NAME)
        _drop_unsampled = _never_samples_unsampled_parents(provider)
    return True


def _never_samples_unsampled_parents(provider: object) -> bool:
    try:
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
    except ImportError:
        return False
    sampler = getattr(provider, "sampler", None)
    return isinstance(sampler, ParentBased) and getattr(
        sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF


def traceparent_of(span_context: SpanContext) -> str:
    """The W3C ``traceparent`` header of ``span_context``."""
    return (f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
            f"{span_context.trace_flags:02x}")


_HEX = frozenset("0123456789abcdef")
_last_parent: tuple[str, str | None, Context | None, bool] = ("", None, None, False)


def parent_context(traceparent: str, tracestate: str | None = None) -> Context | None:
    """The context of a remote parent given as W3C headers; None when ``traceparent`` is bad.

    Same rules as the W3C propagator (version ``ff`` and all-zero ids refused, a later version
    may append fields); the last result is cached, as consecutive entries often share it.
    """
    return _parent(traceparent, tracestate)[0]


def _parent(traceparent: str, tracestate: str | None) -> tuple[Context | None, bool]:
    """``parent_context`` and whether the parent is sampled."""
    global _last_parent
    last_tp, last_ts, last_ctx, last_sampled = _last_parent
    if traceparent == last_tp and tracestate == last_ts:
        return last_ctx, last_sampled
    ctx = None
    sampled = False
    parts = traceparent.strip().split("-")
    if len(parts) >= 4:
        version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
        if (len(version) == 2 and len(trace_id) == 32 and len(span_id) == 16
                and len(flags) == 2 and version != "ff" and (version != "00" or len(parts) == 4)
                and _HEX.issuperset(version + trace_id + span_id + flags)):
            tid, sid = int(trace_id, 16), int(span_id, 16)
            if tid and sid:
                state = TraceState.from_header([tracestate]) if tracestate else None
                trace_flags = TraceFlags(int(flags, 16))
                sampled = trace_flags.sampled
                span_context = SpanContext(tid, sid, is_remote=True, trace_flags=trace_flags,
                                           trace_state=state)
                ctx = trace.set_span_in_context(NonRecordingSpan(span_context), Context())
    _last_parent = (traceparent, tracestate, ctx, sampled)
    return ctx, sampled


@contextmanager
def publish_span(queue: str, job_name: str, level: str, count: int = 1) -> Iterator[
        tuple[Span, dict[str, str]]]:
    """A PRODUCER span around an add; yields the span and the carrier to store in the entry
    (``traceparent`` and, when set, ``tracestate``; empty when tracing is off)."""
    if not tracing_active():
        yield INVALID_SPAN, {}
        return
    attributes: dict[str, Any] = {
        ATTR_SYSTEM: SYSTEM, ATTR_OPERATION: "send", ATTR_OPERATION_NAME: "publish",
        ATTR_DESTINATION: queue, ATTR_JOB_NAME: job_name, ATTR_LEVEL: level,
    }
    if count > 1:
        attributes[ATTR_BATCH_COUNT] = count
    span = _tracer.start_span(f"publish {queue}", kind=SpanKind.PRODUCER, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        carrier: dict[str, str] = {}
        span_context = span.get_span_context()
        if span_context.is_valid:
            carrier["traceparent"] = traceparent_of(span_context)
            if span_context.trace_state:
                carrier["tracestate"] = span_context.trace_state.to_header()
        yield span, carrier
    except BaseException as exc:
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()
        otel_context.detach(token)


class process_span:  # a lower-case name: used as ``with process_span(...) as span``
    """A CONSUMER span around one attempt, child of the context carried in the entry, current
    while the handler runs (its own spans nest under it).

    A class rather than a ``@contextmanager`` generator: entering and leaving cost two calls.
    The worker records failures itself (``record_failure``); an exception escaping the block
    (cancellation at shutdown) only ends the span.
    """

    __slots__ = ("_context", "_token", "span")

    def __init__(self, queue: str, group: str, consumer: str, job_id: str, job_name: str,
                 attempt: int, level: str, traceparent: str | None,
                 tracestate: str | None) -> None:
        self._token: object = None
        parent = None
        if traceparent:
            parent, sampled = _parent(traceparent, tracestate)
            if parent is not None and not sampled and _drop_unsampled:
                # The SDK would make a non-recording child: the parent's context does the
                # same job (same trace, same flags for anything the handler propagates).
                self._context: Context | None = parent
                self.span: Span = trace.get_current_span(parent)
                return
        self._context = None
        self.span = _tracer.start_span(
            f"process {queue}", context=parent, kind=SpanKind.CONSUMER,
            record_exception=False, set_status_on_exception=False,
            attributes={
                ATTR_SYSTEM: SYSTEM, ATTR_OPERATION: "process", ATTR_OPERATION_NAME: "process",
                ATTR_DESTINATION: queue, ATTR_GROUP: group, ATTR_CLIENT_ID: consumer,
                ATTR_MESSAGE_ID: job_id, ATTR_JOB_NAME: job_name, ATTR_ATTEMPT: attempt,
                ATTR_LEVEL: level,
            })

    def __enter__(self) -> Span:
        self._token = otel_context.attach(
            self._context if self._context is not None
            else trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


def record_failure(span: Span, exc: BaseException, outcome: str) -> None:
    """Mark ``span`` as failed and add the outcome (``retrying``, ``dead``) as an event.

    Passwords in URLs are masked in the status, message and stack trace, as in dead letters:
    spans leave for a tracing backend that more people read than the job's data."""
    if span.is_recording():
        span.record_exception(exc, attributes={
            "exception.message": redact(str(exc)),
            "exception.stacktrace": redact("".join(traceback.format_exception(exc)))})
        span.set_status(Status(StatusCode.ERROR, redact(f"{type(exc).__name__}: {exc}")))
        span.add_event(f"streamflow.{outcome}")


# -- SDK setup from the environment -----------------------------------------------------------


def _exporters(variable: str) -> set[str]:
    value = os.environ.get(variable, "")
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def configure_from_env(console: bool = False, prometheus: bool = False,
                       service_name: str = "streamflow") -> Callable[[], bytes] | None:
    """Install SDK tracer and meter providers as the standard ``OTEL_*`` variables ask.

    Traces go to OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is
    set or ``OTEL_TRACES_EXPORTER`` names ``otlp``; to the console with ``console=True`` or
    ``OTEL_TRACES_EXPORTER=console``. Metrics likewise (``OTEL_METRICS_EXPORTER``, export every
    ``OTEL_METRIC_EXPORT_INTERVAL`` ms). The resource comes from ``OTEL_SERVICE_NAME`` /
    ``OTEL_RESOURCE_ATTRIBUTES`` (``service_name`` when neither names the service).

    With ``prometheus=True`` a Prometheus reader is added too and the function returns a
    callable giving the text exposition (serve it as ``/metrics``); otherwise None. Without the
    SDK (``pip install 'streamflow[otel]'``) it logs a hint and installs nothing.
    """
    try:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        log.warning("OpenTelemetry SDK not installed: no spans or metrics are exported "
                    "(pip install 'streamflow[otel]')")
        return None

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    traces = _exporters("OTEL_TRACES_EXPORTER")
    metric_exporters = _exporters("OTEL_METRICS_EXPORTER")
    otlp_traces = "otlp" in traces or (not traces and bool(
        endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")))
    otlp_metrics = "otlp" in metric_exporters or (not metric_exporters and bool(
        endpoint or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")))
    console = console or "console" in traces
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if (otlp_traces or otlp_metrics) and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; using http/protobuf",
                    protocol)

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))

    if otlp_traces or console:
        provider = TracerProvider(resource=resource)
        if otlp_traces:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            except ImportError:
                log.warning("OTLP requested but opentelemetry-exporter-otlp-proto-http is not "
                            "installed (pip install 'streamflow[otel]')")
        if console:
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        tracing_active()  # bind the module tracer to the new provider

    readers: list[MetricReader] = []
    text: Callable[[], bytes] | None = None
    if otlp_metrics:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        except ImportError:
            log.warning("OTLP metrics requested but opentelemetry-exporter-otlp-proto-http is "
                        "not installed (pip install 'streamflow[otel]')")
    if prometheus:
        from .metrics import prometheus_reader

        found = prometheus_reader()
        if found is not None:
            reader, text = found
            readers.append(reader)
    if readers:
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return text
