"""Tracing and metrics: span names, messaging attributes, traceparent inject/extract.

Uses the OpenTelemetry API only; with no SDK configured every call is a cheap no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

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

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("streamflow")


def tracing_active() -> bool:
    """True when an SDK tracer provider is installed (spans are recorded)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@contextmanager
def publish_span(queue: str, job_name: str, level: str, count: int = 1) -> Iterator[
        tuple[Span, dict[str, str]]]:
    """A PRODUCER span around an add; yields the span and the carrier to store in the entry."""
    attributes: dict[str, Any] = {
        ATTR_SYSTEM: SYSTEM, ATTR_OPERATION: "send", ATTR_OPERATION_NAME: "publish",
        ATTR_DESTINATION: queue, ATTR_JOB_NAME: job_name, ATTR_LEVEL: level,
    }
    if count > 1:
        attributes[ATTR_BATCH_COUNT] = count
    with _tracer.start_as_current_span(f"publish {queue}", kind=SpanKind.PRODUCER,
                                       attributes=attributes) as span:
        carrier: dict[str, str] = {}
        if span.get_span_context().is_valid:
            _propagator.inject(carrier)
        yield span, carrier


@contextmanager
def process_span(queue: str, group: str, consumer: str, job_id: str, job_name: str,
                 attempt: int, level: str, traceparent: str | None,
                 tracestate: str | None) -> Iterator[Span]:
    """A CONSUMER span around one attempt, child of the context carried in the entry."""
    parent = None
    if traceparent:
        carrier = {"traceparent": traceparent}
        if tracestate:
            carrier["tracestate"] = tracestate
        parent = _propagator.extract(carrier)
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with _tracer.start_as_current_span(
            f"process {queue}", kind=SpanKind.CONSUMER, record_exception=False,
            set_status_on_exception=False,
            attributes={
                ATTR_SYSTEM: SYSTEM, ATTR_OPERATION: "process", ATTR_OPERATION_NAME: "process",
                ATTR_DESTINATION: queue, ATTR_GROUP: group, ATTR_CLIENT_ID: consumer,
                ATTR_MESSAGE_ID: job_id, ATTR_JOB_NAME: job_name, ATTR_ATTEMPT: attempt,
                ATTR_LEVEL: level,
            },
        ) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


def record_failure(span: Span, exc: BaseException, outcome: str) -> None:
    """Mark ``span`` as failed and add the outcome (retrying, dead) as an event."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.add_event(f"streamflow.{outcome}")
