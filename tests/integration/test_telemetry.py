"""Tracing: publish -> process spans, one trace through retries, across processes, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streamflow import Queue, Worker, telemetry
from streamflow.telemetry import parent_context, publish_span, traceparent_of
from tests.otel_worker import router
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """An SDK provider for streamflow's spans during the test (the global one is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer_provider(provider)
    yield exporter
    telemetry.use_tracer_provider(None)
    provider.shutdown()


def of_queue(exporter: InMemorySpanExporter, queue: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans()
            if (s.attributes or {}).get("messaging.destination.name") == queue]


def process_spans(exporter: InMemorySpanExporter, queue: str) -> list[ReadableSpan]:
    return [s for s in of_queue(exporter, queue) if s.kind is SpanKind.CONSUMER]


async def test_one_trace_from_add_through_a_retry_to_completion(
        redis_url: str, queue_name: str, spans: InMemorySpanExporter) -> None:
    settings = fast_settings(redis_url)
    worker = Worker(queue_name, router, settings=settings, concurrency=2, consumer="c1")
    async with Queue(queue_name, settings=settings) as q, running(worker):
        job_id = await q.add("flaky", {"n": 1}, priority="high")
        await wait_until(lambda: len(process_spans(spans, queue_name)) == 2)

    publish = [s for s in of_queue(spans, queue_name) if s.kind is SpanKind.PRODUCER]
    assert len(publish) == 1
    producer = publish[0]
    assert producer.name == f"publish {queue_name}"
    assert producer.attributes == {
        "messaging.system": "redis_streams", "messaging.operation.type": "send",
        "messaging.operation.name": "publish", "messaging.destination.name": queue_name,
        "streamflow.job.name": "flaky", "streamflow.job.priority": "high"}

    first, second = sorted(process_spans(spans, queue_name),
                           key=lambda s: str((s.attributes or {})["streamflow.job.attempt"]))
    trace_id = producer.context.trace_id
    for span in (first, second):
        assert span.name == f"process {queue_name}"
        assert span.context.trace_id == trace_id
        assert span.parent is not None and span.parent.span_id == producer.context.span_id
        assert span.parent.is_remote
    attrs = dict(first.attributes or {})
    assert attrs == {
        "messaging.system": "redis_streams", "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.destination.name": queue_name,
        "messaging.consumer.group.name": "workers", "messaging.client.id": "c1",
        "messaging.message.id": job_id, "streamflow.job.name": "flaky",
        "streamflow.job.attempt": 1, "streamflow.job.priority": "high"}
    assert (second.attributes or {})["streamflow.job.attempt"] == 2
    assert first.status.status_code is StatusCode.ERROR
    assert "RuntimeError: first attempt fails" in (first.status.description or "")
    assert [e.name for e in first.events] == ["exception", "streamflow.retrying"]
    assert (first.events[0].attributes or {})["exception.type"] == "RuntimeError"
    assert second.status.status_code is StatusCode.UNSET
    assert list(second.events) == []


async def test_dead_letter_is_an_error_with_a_dead_event(
        redis_url: str, queue_name: str, spans: InMemorySpanExporter) -> None:
    settings = fast_settings(redis_url, attempts=1)
    worker = Worker(queue_name, router, settings=settings, concurrency=2)
    async with Queue(queue_name, settings=settings) as q, running(worker):
        await q.add("boom")
        await wait_until(lambda: len(process_spans(spans, queue_name)) == 1)
    (span,) = process_spans(spans, queue_name)
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception", "streamflow.dead"]


async def test_handler_spans_nest_under_the_process_span(
        redis_url: str, queue_name: str, spans: InMemorySpanExporter) -> None:
    settings = fast_settings(redis_url)
    seen: list[Any] = []

    async def handler(job: Any) -> None:
        seen.append(trace.get_current_span().get_span_context())

    worker = Worker(queue_name, handler, settings=settings, concurrency=1)
    async with Queue(queue_name, settings=settings) as q, running(worker):
        await q.add_bulk([("a", 1), ("b", 2)])
        await wait_until(lambda: len(process_spans(spans, queue_name)) == 2)
    publish = [s for s in of_queue(spans, queue_name) if s.kind is SpanKind.PRODUCER]
    assert len(publish) == 1 and (publish[0].attributes or {})[
        "messaging.batch.message_count"] == 2
    processed = process_spans(spans, queue_name)
    assert {s.context.span_id for s in processed} == {c.span_id for c in seen}
    assert all(s.parent and s.parent.span_id == publish[0].context.span_id for s in processed)


async def test_without_an_sdk_no_trace_context_is_stored(redis_url: str,
                                                         queue_name: str) -> None:
    telemetry.use_tracer_provider(trace.NoOpTracerProvider())
    try:
        assert not telemetry.tracing_active()
        with publish_span(queue_name, "x", "normal") as (span, carrier):
            assert carrier == {} and not span.is_recording()
        async with Queue(queue_name, url=redis_url) as q:
            await q.add("x", 1)
            ((_, fields),) = await q.client.xrange(q.keys.level("normal"))
        assert b"tp" not in fields
    finally:
        telemetry.use_tracer_provider(None)


def test_parent_context_parses_like_the_w3c_propagator() -> None:
    propagator = TraceContextTextMapPropagator()
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    cases = [good, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
             "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
             "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
             "00-00000000000000000000000000000000-b7ad6b7169203331-01",
             "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
             "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
             "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
             "garbage", ""]
    for header in cases:
        for state in (None, "vendor=abc,other=1"):
            carrier = {"traceparent": header, **({"tracestate": state} if state else {})}
            want = trace.get_current_span(propagator.extract(carrier)).get_span_context()
            ctx = parent_context(header, state)
            got = trace.get_current_span(ctx).get_span_context() if ctx else None
            if not want.is_valid:
                assert got is None, header
                continue
            assert got == want, header
            assert traceparent_of(got)[3:] == header[3:55]


async def test_parent_child_across_processes(redis_url: str, queue_name: str,
                                             spans: InMemorySpanExporter,
                                             tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    spans_file.touch()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.otel_worker", redis_url, queue_name, str(spans_file)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        async with Queue(queue_name, url=redis_url) as q:
            ok_id = await q.add("ok", {"x": 1})
            flaky_id = await q.add("flaky", None, priority="low")

            def worker_spans() -> list[dict[str, Any]]:
                return [json.loads(line) for line in spans_file.read_text().splitlines()]

            await wait_until(lambda: len(worker_spans()) >= 3, timeout=20)
    finally:
        child.terminate()
        child.wait(15)
    publish = {(s.attributes or {})["streamflow.job.name"]: s
               for s in of_queue(spans, queue_name) if s.kind is SpanKind.PRODUCER}
    by_job: dict[str, list[dict[str, Any]]] = {}
    for record in worker_spans():
        by_job.setdefault(record["attributes"]["messaging.message.id"], []).append(record)
    assert sorted(len(v) for v in by_job.values()) == [1, 2]
    for job_id, name in ((ok_id, "ok"), (flaky_id, "flaky")):
        producer = publish[name].context
        for record in by_job[str(job_id)]:
            assert record["kind"] == "CONSUMER"
            assert record["trace_id"] == f"{producer.trace_id:032x}"
            assert record["parent_span_id"] == f"{producer.span_id:016x}"
            assert record["parent_remote"] is True
            assert record["attributes"]["messaging.consumer.group.name"] == "workers"
            assert record["attributes"]["messaging.client.id"] == "otel-worker"
    attempts = sorted(by_job[str(flaky_id)], key=lambda r: r["attributes"][
        "streamflow.job.attempt"])
    assert [r["status"] for r in attempts] == ["ERROR", "UNSET"]
    assert attempts[0]["events"] == ["exception", "streamflow.retrying"]
    assert attempts[0]["attributes"]["streamflow.job.priority"] == "low"


def test_configure_from_env_installs_otlp_console_and_prometheus(tmp_path: Path) -> None:
    script = """
import os
from opentelemetry import metrics, trace
from streamflow import telemetry
text = telemetry.configure_from_env(console=True, prometheus=True)
provider = trace.get_tracer_provider()
processors = provider._active_span_processor._span_processors
exporters = sorted(type(p.span_exporter).__name__ for p in processors)
meter_provider = metrics.get_meter_provider()
readers = sorted(type(r).__name__ for r in meter_provider._all_metric_readers)
print(exporters, readers, provider.resource.attributes["service.name"],
      telemetry.tracing_active(), b"process_cpu_seconds_total" in text())
os._exit(0)
"""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
           "OTEL_SERVICE_NAME": "payments-worker", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=30, check=True)
    assert out.stdout.strip().splitlines()[-1] == (
        "['ConsoleSpanExporter', 'OTLPSpanExporter'] "
        "['PeriodicExportingMetricReader', 'PrometheusMetricReader'] payments-worker True True")

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    quiet = "from streamflow import telemetry; print(telemetry.configure_from_env(), " \
            "telemetry.tracing_active())"
    out = subprocess.run([sys.executable, "-c", quiet], env=env, capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.strip() == "None False"


async def test_tracing_survives_a_fast_noop_under_load(redis_url: str, queue_name: str,
                                                        spans: InMemorySpanExporter) -> None:
    settings = fast_settings(redis_url)
    count = 0

    async def handler(job: Any) -> None:
        nonlocal count
        count += 1

    worker = Worker(queue_name, handler, settings=settings, concurrency=20)
    async with Queue(queue_name, settings=settings) as q, running(worker):
        await q.add_bulk([("n", i) for i in range(500)])
        with anyio.fail_after(20):
            await wait_until(lambda: count == 500)
    processed = process_spans(spans, queue_name)
    assert len(processed) == 500
    assert len({s.context.trace_id for s in processed}) == 1


def test_unsampled_parents_skip_the_sdk_but_keep_the_trace() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    for sampler, recorded in ((None, 0), (ParentBased(ALWAYS_ON,
                                                      remote_parent_not_sampled=ALWAYS_ON), 1)):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry.use_tracer_provider(provider)
        try:
            assert telemetry.tracing_active()
            with telemetry.process_span("q", "g", "c", "j", "n", 1, "normal", header,
                                        None) as span:
                current = trace.get_current_span().get_span_context()
                assert current.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
                assert span.is_recording() == bool(recorded)
                assert current.trace_flags.sampled == bool(recorded)
            assert trace.get_current_span() is trace.INVALID_SPAN
        finally:
            telemetry.use_tracer_provider(None)
        finished = exporter.get_finished_spans()
        assert len(finished) == recorded
        if recorded:
            assert finished[0].parent is not None
            assert finished[0].parent.span_id == 0xB7AD6B7169203331


async def test_failure_spans_mask_passwords_like_dead_letters(
        redis_url: str, queue_name: str, spans: InMemorySpanExporter) -> None:
    settings = fast_settings(redis_url, attempts=1)
    url = "postgresql://ledger:s3cret-pw@db.internal/ledger"

    async def handler(job: Any) -> None:
        raise ConnectionError(f"cannot reach {url}")

    async with Queue(queue_name, settings=settings) as q, running(
            Worker(queue_name, handler, settings=settings)):
        await q.add("call")
        await wait_until(lambda: len(process_spans(spans, queue_name)) == 1)
    (span,) = process_spans(spans, queue_name)
    (exception,) = [e for e in span.events if e.name == "exception"]
    attributes = exception.attributes or {}
    shown = [span.status.description or "", *(str(v) for v in attributes.values())]
    assert all("s3cret-pw" not in text for text in shown)  # before: in all three texts
    assert span.status.description == (
        "ConnectionError: cannot reach postgresql://ledger:***@db.internal/ledger")
    assert "ledger:***@db.internal" in str((exception.attributes or {})["exception.stacktrace"])
