"""Bulk enqueue rate, then end-to-end processing rate of ONE worker process (no-op handler).

    python -m benchmarks.throughput URL --jobs 100000 [--concurrency 100] [--tracing off|api|sdk]
        [--events all|failures|none]

``--events`` sets the queue's lifecycle events (default: the library's default); a completed
event is one XADD per job, the largest part of the Redis CPU per processed job, and with
``all`` an added event is one more per job added. The enqueue's CPU per job is printed for the
producer process (``enqueue_python_cpu_us_per_job``) and for Redis (INFO cpu).
"""

from __future__ import annotations

import argparse
import os
import time

import anyio
import psutil

from benchmarks.common import PAYLOAD, emit, redis_cpu_s
from streamflow import Job, Queue, StreamflowSettings, Worker, scripts


def setup_tracing(mode: str) -> None:
    if mode != "sdk":
        return  # "off" and "api": only the OpenTelemetry API, no SDK installed: no-op
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DiscardExporter(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
    trace.set_tracer_provider(provider)


async def main(url: str, jobs: int, concurrency: int, tracing: str,
               events: str | None) -> None:
    setup_tracing(tracing)
    settings = StreamflowSettings.from_url(url, prefix=f"bench{os.getpid()}")
    if events is not None:
        settings.queue.events = events  # type: ignore[assignment]
    queue_name = "throughput"
    async with Queue(queue_name, settings=settings) as q:
        await scripts.load_scripts(q.client)  # connects, settles FCALL or EVALSHA
        redis_before = await redis_cpu_s(q.client)
        cpu_before_s = time.process_time()
        start = time.perf_counter()
        for offset in range(0, jobs, 10_000):
            await q.add_bulk([("noop", PAYLOAD)] * min(10_000, jobs - offset))
        enqueue_s = time.perf_counter() - start
        enqueue_cpu_s = time.process_time() - cpu_before_s
        enqueue_redis_s = await redis_cpu_s(q.client) - redis_before

        finished = anyio.Event()
        count = 0

        async def noop(job: Job) -> None:
            nonlocal count
            count += 1
            if count == jobs:
                finished.set()

        worker = Worker(queue_name, noop, settings=settings, concurrency=concurrency)
        process = psutil.Process()
        cpu_before = process.cpu_times()
        redis_before = await redis_cpu_s(q.client)
        async with anyio.create_task_group() as tg:
            start = time.perf_counter()
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await finished.wait()
            process_s = time.perf_counter() - start
            await worker.close()
        cpu_after = process.cpu_times()
        redis_s = await redis_cpu_s(q.client) - redis_before
        cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        await q.client.delete(*q.keys.streams, q.keys.events, q.keys.done, q.keys.workers)
    emit({"enqueue_per_s": jobs / enqueue_s,
          "enqueue_python_cpu_us_per_job": enqueue_cpu_s / jobs * 1e6,
          "enqueue_redis_cpu_us_per_job": enqueue_redis_s / jobs * 1e6,
          "process_per_s": jobs / process_s,
          "worker_cpu_us_per_job": cpu_s / jobs * 1e6,
          "redis_cpu_us_per_job": redis_s / jobs * 1e6,
          "rss_mb": process.memory_info().rss / 2**20})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--tracing", choices=["off", "api", "sdk"], default="off")
    parser.add_argument("--events", choices=["all", "outcomes", "failures", "none"],
                        default=None)
    args = parser.parse_args()
    anyio.run(main, args.url, args.jobs, args.concurrency, args.tracing, args.events)
