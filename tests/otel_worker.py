"""A traced worker process for cross-process tracing tests.

    python -m tests.otel_worker REDIS_URL QUEUE SPANS_FILE

Runs a ``Worker`` with an SDK tracer provider whose exporter appends every finished span to
SPANS_FILE as one JSON object a line, until SIGTERM. Handlers: ``ok`` returns, ``flaky`` fails
its first attempt, ``boom`` always fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from streamflow import Job, Router, Worker
from tests.support import fast_settings


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The fields the tests compare, JSON-ready (ids as hex)."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "parent_remote": bool(span.parent and span.parent.is_remote),
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
    }


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file as a JSON line (flushed at once: the test polls it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as out:
            for span in spans:
                out.write(json.dumps(span_record(span)) + "\n")
        return SpanExportResult.SUCCESS


router = Router()


@router.handler("ok")
async def ok(job: Job) -> str:
    return "ok"


@router.handler("flaky")
async def flaky(job: Job) -> str:
    if job.attempt == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@router.handler("boom")
async def boom(job: Job) -> None:
    raise ValueError("always fails")


def main() -> None:
    url, queue, spans_file = sys.argv[1:4]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(Path(spans_file))))
    trace.set_tracer_provider(provider)
    worker = Worker(queue, router, settings=fast_settings(url), concurrency=4,
                    consumer="otel-worker")
    anyio.run(worker.run)


if __name__ == "__main__":
    main()
