"""Adding jobs: concurrent single adds share script calls, a bulk add one pipeline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..addcheck import shown
from ..backoff import Backoff
from ..errors import InvalidJob
from ..metrics import metrics_for
from ..settings import Durability
from ..telemetry import publish_span, tracing_active
from .base import QueueBase


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of a bulk add; fields as the keyword arguments of ``Queue.add``."""

    name: str
    data: Any = None
    priority: str | None = None
    delay: timedelta | float | None = None
    job_id: str | None = None
    attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    track: bool = False
    keep_result: bool | None = None
    index: Mapping[str, str | int] | None = None
    key: str | None = None
    """Routing key of a partitioned queue: jobs of one key go to one partition."""


def as_spec(job: object) -> JobSpec:
    """A job of ``add_bulk`` as a ``JobSpec``: itself, or that of a ``(name, data)`` pair;
    ``InvalidJob`` for anything else."""
    if isinstance(job, JobSpec):
        return job
    if type(job) is tuple or type(job) is list:
        try:
            name, data = job
        except ValueError:
            pass
        else:
            return JobSpec(name, data)
    raise InvalidJob(f"a job of add_bulk is a JobSpec or a (name, data) pair, not {shown(job)}")


class Producer(QueueBase):
    """``add`` and ``add_bulk``."""

    async def add(self, name: str, data: Any = None, *, priority: str | None = None,
                  delay: timedelta | float | None = None, job_id: str | None = None,
                  attempts: int | None = None, backoff: Backoff | None = None,
                  timeout: float | None = None, track: bool = False,
                  keep_result: bool | None = None,
                  index: Mapping[str, str | int] | None = None,
                  durability: Durability | None = None) -> str | None:
        """Add one job; returns its id, or None when ``job_id`` was already added within the
        dedup TTL (the duplicate is refused, nothing is written).

        Adds made while others are in flight share one script call (each keeps its own answer).
        Raises ``InvalidJob``/``PayloadTooLarge``/``PayloadNotSerializable``/``UnknownPriority``
        before writing anything, and ``DurabilityError`` when ``durability="replicated"`` and
        no replica confirmed in time (the job may still be on the master: add it again with the
        same ``job_id`` to be sure, the dedup mark keeps it single).

        ``index={"payment_id": "pay_1"}`` makes the job findable by ``Queue.find`` (as do the
        queue's ``index_fields``, read from the data).
        """
        return await self._add_one(name, data, priority, delay, job_id, attempts, backoff,
                                   timeout, track, keep_result, index, durability)

    def _add_one(self, name: Any, data: Any, priority: Any, delay: Any, job_id: Any,
                 attempts: Any, backoff: Any, timeout: Any, track: Any, keep_result: Any,
                 index: Mapping[str, str | int] | None, durability: Durability | None
                 ) -> Awaitable[str | None]:
        """``add`` up to the send: the job checked (raises before anything is written) and
        queued for the next send; the awaitable of its id, to be awaited at once. Positional
        and without a coroutine of its own: this is the path of every webhook."""
        chosen = durability or self.durability
        if chosen != "none" and chosen != "replicated":
            raise InvalidJob(f"durability must be 'none' or 'replicated', not {chosen!r}")
        if tracing_active() or metrics_for(self.name).enabled:
            return self._add_observed(name, data, priority, delay, job_id, attempts, backoff,
                                      timeout, track, keep_result, index, chosen)
        enqueuer = self._enqueuer
        job = enqueuer.prepare_job(name, data, priority, delay, job_id, attempts, backoff,
                                   timeout, track, keep_result, None, index=index)
        return enqueuer.add(job, chosen)

    async def _add_observed(self, name: Any, data: Any, priority: Any, delay: Any,
                            job_id: Any, attempts: Any, backoff: Any, timeout: Any, track: Any,
                            keep_result: Any, index: Mapping[str, str | int] | None,
                            durability: Durability) -> str | None:
        """``_add_one`` with a publish span (when tracing) and the added-jobs metric."""
        now = int(time.time() * 1000)
        enqueuer = self._enqueuer
        added: str | None
        if not tracing_active():
            job = enqueuer.prepare_job(name, data, priority, delay, job_id, attempts, backoff,
                                       timeout, track, keep_result, now, index=index)
            added = await enqueuer.add(job, durability)
        else:
            level = priority if isinstance(priority, str) else self.settings.default_level
            with publish_span(self.name, str(name), level) as (_, carrier):
                job = enqueuer.prepare_job(
                    name, data, priority, delay, job_id, attempts, backoff, timeout, track,
                    keep_result, now, carrier.get("traceparent"), carrier.get("tracestate"),
                    index=index)
                added = await enqueuer.add(job, durability)
        metrics = metrics_for(self.name)
        if metrics.enabled:
            metrics.added_specs([JobSpec(name, data, priority, job_id=job_id)], [added],
                                self.settings.default_level)
        return added

    async def add_bulk(self, jobs: Iterable[JobSpec | tuple[str, Any]], *,
                       durability: Durability | None = None) -> list[str | None]:
        """Add many jobs: one script call per chunk of 1,000, all chunks in one pipeline.

        Returns the ids in order, None for duplicates refused. Every job is checked before
        anything is written.
        """
        items = jobs if isinstance(jobs, list) else list(jobs)
        if not items:
            return []
        durability = self._durability(durability)
        now = int(time.time() * 1000)
        enqueuer = self._enqueuer
        first = as_spec(items[0])
        with publish_span(self.name, str(first.name), first.priority
                          if isinstance(first.priority, str) else self.settings.default_level,
                          len(items)) as (_, carrier):
            prepared = enqueuer.prepare_all(items, now, carrier.get("traceparent"),
                                            carrier.get("tracestate"))
            ids = await enqueuer.add_many(prepared, durability)
        metrics = metrics_for(self.name)
        if metrics.enabled:
            metrics.added_specs([as_spec(job) for job in items], ids,
                                self.settings.default_level)
        return ids

    def _durability(self, durability: object) -> Durability:
        chosen = durability or self.durability
        if chosen not in ("none", "replicated"):
            raise InvalidJob(f"durability must be 'none' or 'replicated', not {chosen!r}")
        return chosen
