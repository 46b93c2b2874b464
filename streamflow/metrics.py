"""Metrics on the OpenTelemetry metrics API: job counters, timing histograms, queue gauges.

``metrics_for(queue)`` gives a ``QueueMetrics`` when a MeterProvider is configured, else the
shared ``NO_METRICS`` whose methods do nothing (the check is one ``isinstance`` per call of
``metrics_for``, made once per worker run). The worker records whole ack batches
(``record_completed`` once per flush and level), never one call per job on its own.

Instruments (Prometheus names in brackets)::

    streamflow.jobs.added / completed / failed / retried / dead / reclaimed   counters
        [streamflow_jobs_added_total ...]        attributes queue, level, job.name (not on
                                                  reclaimed), reason (dead only)
    streamflow.job.duration   histogram, s       handler run time of completed jobs
    streamflow.job.wait       histogram, s       enqueue (or due time) -> start, completed jobs
    streamflow.queue.waiting / pending / lag     gauges per queue, level (and group)
    streamflow.queue.delayed / dead / consumers  gauges per queue
    streamflow.worker.abandoned_threads  up-down counter: handler threads past their deadline
    streamflow.worker.child_crashes      counter: handler processes that died mid-job

``job.name`` is bounded: the first ``MAX_JOB_NAMES`` names seen per queue are kept, later
ones are reported as ``_other``.

Partitioned queues: every series sums the partitions (one set of instruments per queue, gauges
of summed counts). ``STREAMFLOW_METRICS_PARTITION_LABEL=1`` adds a ``partition`` attribute to
what workers record and reports gauges per partition instead: N times the series (sum by
``queue``); ``jobs.added`` (producers) has none.

Cost: the SDK spends about 7 µs on each histogram measurement (Python SDK 1.45), twice the
worker's own cost per job. ``STREAMFLOW_METRICS_HISTOGRAM_STRIDE=N`` records the timings of
every N-th completed job only (counters stay exact); the default, 1, records all.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.metrics import _internal as _api

from .inspect import QueueCounts, read_counts
from .keys import QueueKeys

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader

    from .job import Job

log = logging.getLogger("streamflow.metrics")

METER_NAME = "streamflow"
MAX_JOB_NAMES = 100
MAX_NAME_CHARS = 100
OTHER = "_other"
UNKNOWN = "_unknown"
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
"""Histogram bucket bounds (seconds) for ``streamflow.job.duration`` and ``.wait``."""

_override: MeterProvider | None = None
_PROVIDER_FROM_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ
_cache: dict[str, QueueMetrics] = {}


def use_meter_provider(provider: MeterProvider | None) -> None:
    """Record with ``provider`` instead of the global one (``None``: back to global); clears the
    per-queue instruments. For tests and embedders with several providers."""
    global _override
    _override = provider
    _cache.clear()


def _configured(provider: MeterProvider) -> bool:
    # The API's own providers (proxy before an SDK is set, no-op) live in opentelemetry.metrics.
    return not type(provider).__module__.startswith("opentelemetry.metrics")


def metrics_for(queue: str, partition: int | None = None) -> QueueMetrics | NoMetrics:
    """The metrics of ``queue``: real ones when a MeterProvider is configured, else a no-op;
    with ``partition``, those a worker of that partition records with."""
    found = _cache.get(queue)
    if found is not None:
        return found if partition is None else found.of_partition(partition)
    if _override is None and not _PROVIDER_FROM_ENV and getattr(
            _api, "_METER_PROVIDER", True) is None:
        return NO_METRICS  # no provider set: skip the API's lookup, which reads the environment
    provider = _override if _override is not None else metrics.get_meter_provider()
    if not _configured(provider):
        return NO_METRICS
    meter = provider.get_meter(METER_NAME)
    created = _cache[queue] = QueueMetrics(queue, meter)
    return created if partition is None else created.of_partition(partition)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


class NoMetrics:
    """What ``metrics_for`` returns without a MeterProvider: every method does nothing."""

    enabled = False

    def added_specs(self, specs: Sequence[Any], ids: Sequence[str | None],
                    default_level: str) -> None:
        """Count the jobs of an add (``JobSpec``s and the ids returned; None = duplicate)."""

    def record_completed(self, level: str, completed: Sequence[tuple[Job, int, Any]],
                         now_ms: float | None = None) -> None:
        """Count and time a batch of the worker's completed ``(job, duration_ms, result)``."""

    def completed_batch(self, level: str, names: Sequence[str], durations: Sequence[float],
                        waits: Sequence[float]) -> None:
        """Count and time completed jobs: names, durations and waits (seconds) in step."""

    def failed(self, level: str, name: str | bytes | None) -> None:
        """One failed attempt (whatever comes of it)."""

    def retried(self, level: str, name: str | bytes | None) -> None:
        """One attempt scheduled again after a failure."""

    def dead(self, level: str, name: str | bytes | None, reason: str, count: int = 1) -> None:
        """Jobs dead-lettered (reasons: failed, discarded, crashed, no_handler, malformed,
        stalled, killed_worker)."""

    def reclaimed(self, level: str, count: int) -> None:
        """Stalled entries reclaimed from a gone consumer."""

    def abandoned_threads(self, delta: int) -> None:
        """A handler thread was abandoned past its deadline (+1) or has ended since (-1)."""

    def child_crashed(self) -> None:
        """A child process running a handler died mid-job (process isolation)."""

    def observe_counts(self, group: str, counts: QueueCounts) -> None:
        """Set the snapshot the queue gauges report."""

    def observe_partitions(self, group: str, parts: Sequence[QueueCounts]) -> None:
        """Set the snapshot from each partition's counts (summed unless labelled)."""

    def of_partition(self, partition: int) -> NoMetrics:
        """What a worker of ``partition`` records with (self unless partitions are labelled)."""
        return self

    async def refresh_gauges(self, client: Any, keys: QueueKeys, group: str,
                             interval: float = 5.0) -> None:
        """Keep the gauge snapshot fresh (returns at once: there is nothing to observe)."""


NO_METRICS = NoMetrics()


class QueueMetrics(NoMetrics):
    """The instruments of one queue (shared by every worker and producer of the process)."""

    enabled = True

    def __init__(self, queue: str, meter: Meter, histogram_stride: int | None = None,
                 partition_label: bool | None = None) -> None:
        self.queue = queue
        self.stride = max(1, histogram_stride or int(
            os.environ.get("STREAMFLOW_METRICS_HISTOGRAM_STRIDE", "1") or 1))
        self.partition_label = _env_flag("STREAMFLOW_METRICS_PARTITION_LABEL") \
            if partition_label is None else partition_label
        self.partition: str | None = None
        self._parts: dict[int, QueueMetrics] = {}
        self._by_partition: dict[str, list[QueueCounts]] = {}
        self._seen = 0
        self._names: set[str] = set()
        self._attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._counts: dict[str, QueueCounts] = {}
        job = "{job}"
        self._added = meter.create_counter("streamflow.jobs.added", job, "Jobs added")
        self._completed = meter.create_counter("streamflow.jobs.completed", job,
                                               "Jobs completed")
        self._failed = meter.create_counter("streamflow.jobs.failed", job,
                                            "Failed attempts (retried or dead-lettered)")
        self._retried = meter.create_counter("streamflow.jobs.retried", job,
                                             "Attempts scheduled again after a failure")
        self._dead = meter.create_counter("streamflow.jobs.dead", job, "Jobs dead-lettered")
        self._reclaimed = meter.create_counter("streamflow.jobs.reclaimed", job,
                                               "Stalled entries reclaimed from gone consumers")
        self._abandoned = meter.create_up_down_counter(
            "streamflow.worker.abandoned_threads", "{thread}",
            "Handler threads still running past their deadline")
        self._crashes = meter.create_counter(
            "streamflow.worker.child_crashes", "{process}",
            "Handler processes that died mid-job (process isolation)")
        self.duration = meter.create_histogram(
            "streamflow.job.duration", "s", "Handler run time of completed jobs",
            explicit_bucket_boundaries_advisory=TIME_BUCKETS)
        self.wait = meter.create_histogram(
            "streamflow.job.wait", "s", "Time from enqueue (or due time) to start",
            explicit_bucket_boundaries_advisory=TIME_BUCKETS)
        for name, field, per_level, description in (
                ("waiting", "waiting", True, "Entries not yet delivered to the group"),
                ("pending", "pending", True, "Entries delivered, not yet acknowledged"),
                ("lag", "waiting", True, "Consumer-group lag (XINFO GROUPS lag)"),
                ("delayed", "delayed", False, "Jobs waiting for their due time or retry"),
                ("dead", "dead", False, "Dead-lettered jobs"),
                ("consumers", "consumers", False, "Consumers of the group")):
            meter.create_observable_gauge(f"streamflow.queue.{name}",
                                          [self._observer(field, per_level)],
                                          "{consumer}" if name == "consumers" else job,
                                          description)

    def of_partition(self, partition: int) -> QueueMetrics:
        if not self.partition_label:
            return self
        found = self._parts.get(partition)
        if found is None:  # the same instruments, another attribute set
            found = self._parts[partition] = copy.copy(self)
            found.partition = str(partition)
            found._attrs, found._parts = {}, {}
        return found

    # -- attributes -------------------------------------------------------------------------

    def _queue_attrs(self) -> dict[str, str]:
        part = {} if self.partition is None else {"partition": self.partition}
        return {"queue": self.queue, **part}

    def _name(self, name: str | bytes | None) -> str:
        text = _text(name)
        if not text:
            return UNKNOWN
        if text in self._names:
            return text
        if len(self._names) >= MAX_JOB_NAMES:
            return OTHER
        text = text[:MAX_NAME_CHARS]
        self._names.add(text)
        return text

    def attributes(self, level: str, name: str | bytes | None) -> dict[str, str]:
        """The (cached) attributes of jobs named ``name`` on ``level``."""
        key = (level, name if isinstance(name, str) else _text(name) or "")
        found = self._attrs.get(key)
        if found is None:
            found = self._attrs[key] = {**self._queue_attrs(), "level": level,
                                        "job.name": self._name(name)}
        return found

    # -- recording --------------------------------------------------------------------------

    def added_specs(self, specs: Sequence[Any], ids: Sequence[str | None],
                    default_level: str) -> None:
        groups: dict[tuple[str, str], int] = {}
        for spec, job_id in zip(specs, ids, strict=False):
            if job_id is not None:
                key = (spec.priority or default_level, spec.name)
                groups[key] = groups.get(key, 0) + 1
        for (level, name), count in groups.items():
            self._added.add(count, self.attributes(level, name))

    def record_completed(self, level: str, completed: Sequence[tuple[Job, int, Any]],
                         now_ms: float | None = None) -> None:
        # The start is estimated as flush time - duration: wait is over by the flush delay.
        now = time.time() * 1000 if now_ms is None else now_ms
        names = [job.name for job, _, _ in completed]
        durations = [duration_ms / 1000 for _, duration_ms, _ in completed]
        waits = [max(now - duration_ms - job.enqueued_ms, 0.0) / 1000
                 for job, duration_ms, _ in completed]
        self.completed_batch(level, names, durations, waits)

    def completed_batch(self, level: str, names: Sequence[str], durations: Sequence[float],
                        waits: Sequence[float]) -> None:
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            self._completed.add(count, self.attributes(level, name))
        stride = self.stride
        first = (-self._seen) % stride
        self._seen += len(names)
        record_duration = self.duration.record
        record_wait = self.wait.record
        attributes = self.attributes
        for i in range(first, len(names), stride):
            attrs = attributes(level, names[i])
            record_duration(durations[i], attrs)
            record_wait(waits[i], attrs)

    def failed(self, level: str, name: str | bytes | None) -> None:
        self._failed.add(1, self.attributes(level, name))

    def retried(self, level: str, name: str | bytes | None) -> None:
        self._retried.add(1, self.attributes(level, name))

    def dead(self, level: str, name: str | bytes | None, reason: str, count: int = 1) -> None:
        if count:
            self._dead.add(count, {**self.attributes(level, name), "reason": reason})

    def reclaimed(self, level: str, count: int) -> None:
        if count:
            self._reclaimed.add(count, {**self._queue_attrs(), "level": level})

    def abandoned_threads(self, delta: int) -> None:
        self._abandoned.add(delta, self._queue_attrs())

    def child_crashed(self) -> None:
        self._crashes.add(1, self._queue_attrs())

    # -- gauges -----------------------------------------------------------------------------

    def observe_counts(self, group: str, counts: QueueCounts) -> None:
        self._counts[group] = counts

    def observe_partitions(self, group: str, parts: Sequence[QueueCounts]) -> None:
        if self.partition_label:
            self._by_partition[group] = list(parts)
        else:
            from .queue.partitioned import sum_counts  # that module records with this one

            self._counts[group] = sum_counts(parts)

    def _snapshots(self) -> Iterator[tuple[str, dict[str, str], QueueCounts]]:
        """``(group, attributes, counts)`` of every snapshot the gauges report."""
        for group, counts in list(self._counts.items()):
            yield group, {"queue": self.queue}, counts
        for group, parts in list(self._by_partition.items()):
            for partition, counts in enumerate(parts):
                yield group, {"queue": self.queue, "partition": str(partition)}, counts

    def _observer(self, field: str, per_level: bool) -> Callable[[CallbackOptions],
                                                                  Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterator[Observation]:
            once: set[tuple[str, ...]] = set()
            for group, attrs, counts in self._snapshots():
                if per_level:
                    for level, level_counts in counts["levels"].items():
                        yield Observation(level_counts[field],  # type: ignore[literal-required]
                                          {**attrs, "level": level, "group": group})
                elif field == "consumers":
                    yield Observation(counts["consumers"], {**attrs, "group": group})
                elif tuple(attrs.values()) not in once:  # per queue, not per group
                    once.add(tuple(attrs.values()))
                    yield Observation(counts[field], attrs)  # type: ignore[literal-required]
        return observe

    async def refresh_gauges(self, client: Any, keys: QueueKeys, group: str,
                             interval: float = 5.0) -> None:
        """Read the queue's counts every ``interval`` seconds into the gauge snapshot (gauge
        callbacks are synchronous and must not touch Redis). Runs until cancelled."""
        while True:
            try:
                self.observe_counts(group, await read_counts(client, keys, group))
            except Exception as exc:  # a gauge refresh must never stop a worker
                log.debug("metrics: reading counts of %s failed: %s", self.queue, exc)
            await anyio.sleep(interval)


# -- Prometheus ---------------------------------------------------------------------------


def prometheus_reader() -> tuple[MetricReader, Callable[[], bytes]] | None:
    """A Prometheus metric reader on a private registry, and a function giving its text
    exposition (with process metrics); None when the exporter is not installed.

    Add the reader to the MeterProvider (``configure_from_env(prometheus=True)`` does) and
    serve the function as ``/metrics`` (``streamflow.health.serve_health(metrics=...)``).
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.platform_collector import PlatformCollector
        from prometheus_client.process_collector import ProcessCollector
    except ImportError:
        log.warning("Prometheus metrics need opentelemetry-exporter-prometheus and "
                    "prometheus-client (pip install 'streamflow[otel]')")
        return None
    registry = CollectorRegistry(auto_describe=True)
    try:
        reader = PrometheusMetricReader(registry=registry)  # type: ignore[call-arg,unused-ignore]
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    except TypeError:  # an exporter before the registry argument: the global registry
        from prometheus_client import REGISTRY

        registry = REGISTRY  # which has the process collectors already
        reader = PrometheusMetricReader()

    def text() -> bytes:
        return bytes(generate_latest(registry))

    return reader, text
