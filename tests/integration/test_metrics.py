"""Metrics: counters and histograms from a real worker, queue gauges, Prometheus over HTTP."""

from __future__ import annotations

import urllib.request
from typing import Any

import anyio
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from streamflow import Queue, Worker, metrics
from streamflow.health import serve_health
from streamflow.metrics import MAX_JOB_NAMES, NO_METRICS, OTHER, metrics_for, prometheus_reader
from tests.otel_worker import router
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


def points(reader: InMemoryMetricReader, name: str, queue: str) -> list[Any]:
    data = reader.get_metrics_data()
    out: list[Any] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    out += [p for p in metric.data.data_points
                            if (p.attributes or {}).get("queue") == queue]
    return out


def total(reader: InMemoryMetricReader, name: str, queue: str, **attrs: str) -> float:
    return float(sum(p.value for p in points(reader, name, queue)
                     if all((p.attributes or {}).get(k) == v for k, v in attrs.items())))


async def test_worker_counts_and_times_jobs(redis_url: str, queue_name: str,
                                            reader: InMemoryMetricReader) -> None:
    settings = fast_settings(redis_url, attempts=2)
    worker = Worker(queue_name, router, settings=settings, concurrency=4)
    async with Queue(queue_name, settings=settings) as q, running(worker):
        await q.add_bulk([("ok", i) for i in range(3)])
        await q.add("flaky", priority="high")
        await q.add("boom")
        await q.add("ok", job_id="once")
        assert await q.add("ok", job_id="once") is None  # a refused duplicate is not counted
        await wait_until(lambda: total(reader, "streamflow.jobs.completed", queue_name) == 5
                         and total(reader, "streamflow.jobs.dead", queue_name) == 1)

    assert total(reader, "streamflow.jobs.added", queue_name) == 6
    assert total(reader, "streamflow.jobs.added", queue_name, level="high",
                 **{"job.name": "flaky"}) == 1
    assert total(reader, "streamflow.jobs.completed", queue_name, **{"job.name": "ok"}) == 4
    assert total(reader, "streamflow.jobs.failed", queue_name) == 3  # flaky once, boom twice
    assert total(reader, "streamflow.jobs.retried", queue_name) == 2
    assert total(reader, "streamflow.jobs.dead", queue_name, reason="failed",
                 **{"job.name": "boom"}) == 1
    durations = points(reader, "streamflow.job.duration", queue_name)
    waits = points(reader, "streamflow.job.wait", queue_name)
    assert sum(p.count for p in durations) == 5 and sum(p.count for p in waits) == 5
    assert all(p.min >= 0 for p in durations + waits)
    assert {(p.attributes or {})["level"] for p in durations} == {"high", "normal"}


async def test_queue_gauges_read_a_refreshed_snapshot(redis_url: str, queue_name: str,
                                                      reader: InMemoryMetricReader) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings) as q:
        await q.add_bulk([("ok", i) for i in range(4)])
        await q.add("ok", priority="low")
        await q.add("ok", delay=60)
        queue_metrics = metrics_for(queue_name)
        async with anyio.create_task_group() as tg:
            tg.start_soon(queue_metrics.refresh_gauges, q.client, q.keys, "workers", 0.05)
            await wait_until(lambda: total(reader, "streamflow.queue.waiting", queue_name) == 5)
            tg.cancel_scope.cancel()
    assert total(reader, "streamflow.queue.waiting", queue_name, level="normal") == 4
    assert total(reader, "streamflow.queue.lag", queue_name, level="low") == 1
    assert total(reader, "streamflow.queue.pending", queue_name) == 0
    assert total(reader, "streamflow.queue.delayed", queue_name) == 1
    assert total(reader, "streamflow.queue.dead", queue_name) == 0


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        body = response.read().decode()
    samples: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def completed(url: str, queue: str) -> float:
    """The completed counter as scraped (in a thread: the server runs on this event loop)."""
    samples = await anyio.to_thread.run_sync(scrape, url)
    return sample(samples, "streamflow_jobs_completed_total", queue)


async def _equals(value: Any, expected: float) -> bool:
    return bool(await value == expected)


def sample(samples: dict[str, float], metric: str, queue: str) -> float:
    return sum(v for k, v in samples.items()
               if k.startswith(metric + "{") and f'queue="{queue}"' in k)


async def test_prometheus_endpoint_shows_counters_moving(redis_url: str,
                                                         queue_name: str) -> None:
    found = prometheus_reader()
    assert found is not None
    prom_reader, text = found
    provider = MeterProvider(metric_readers=[prom_reader])
    metrics.use_meter_provider(provider)
    try:
        settings = fast_settings(redis_url)
        worker = Worker(queue_name, router, settings=settings, concurrency=4)
        async with Queue(queue_name, settings=settings) as q, running(worker), \
                anyio.create_task_group() as tg:
            port = await tg.start(lambda task_status: serve_health(
                0, lambda: True, lambda: True, host="127.0.0.1", metrics=text,
                task_status=task_status))
            url = f"http://127.0.0.1:{port}/metrics"
            await q.add("ok")
            await wait_until(lambda: _equals(completed(url, queue_name), 1))
            await q.add_bulk([("ok", i) for i in range(10)])
            await wait_until(lambda: _equals(completed(url, queue_name), 11))
            samples = await anyio.to_thread.run_sync(scrape, url)
            tg.cancel_scope.cancel()
    finally:
        metrics.use_meter_provider(None)
        provider.shutdown()
    assert sample(samples, "streamflow_jobs_added_total", queue_name) == 11
    assert sample(samples, "streamflow_job_duration_seconds_count", queue_name) == 11
    assert sample(samples, "streamflow_job_wait_seconds_bucket", queue_name) > 0
    assert "process_cpu_seconds_total" in samples


def test_without_a_meter_provider_everything_is_a_no_op() -> None:
    metrics.use_meter_provider(NoOpMeterProvider())
    try:
        assert metrics_for("anything") is NO_METRICS
        NO_METRICS.completed_batch("normal", ["a"], [0.1], [0.2])
        NO_METRICS.failed("normal", "a")
    finally:
        metrics.use_meter_provider(None)


def test_job_names_are_bounded_and_histograms_can_be_strided(
        reader: InMemoryMetricReader) -> None:
    queue_metrics = metrics_for("bounded")
    assert queue_metrics.enabled
    names = [f"name-{i}" for i in range(MAX_JOB_NAMES + 50)]
    queue_metrics.completed_batch("normal", names, [0.01] * len(names), [0.02] * len(names))
    counted = {(p.attributes or {})["job.name"]: p.value
               for p in points(reader, "streamflow.jobs.completed", "bounded")}
    assert len(counted) == MAX_JOB_NAMES + 1 and counted[OTHER] == 50



def test_histograms_can_record_every_nth_job_only() -> None:
    found = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[found])
    strided = metrics.QueueMetrics("strided", provider.get_meter("t"), histogram_stride=10)
    for batch in (7, 7, 7, 9):  # 30 jobs over uneven batches: every 10th is timed
        strided.completed_batch("normal", ["a"] * batch, [0.01] * batch, [0.02] * batch)
    assert total(found, "streamflow.jobs.completed", "strided") == 30
    assert sum(p.count for p in points(found, "streamflow.job.duration", "strided")) == 3
    provider.shutdown()
