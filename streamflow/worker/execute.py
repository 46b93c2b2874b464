"""Running one job: resolve its handler, call it (async, or sync in a thread) under its
deadline, and turn what happened into an outcome for the acker."""

from __future__ import annotations

import logging
import time
import traceback
from asyncio import CancelledError
from collections.abc import Callable
from typing import Any

import anyio

from ..backoff import Backoff
from ..cancel import CancelWatcher
from ..errors import JobCancelled, JobTimeout
from ..job import Job
from ..logs import bind_job, unbind_job
from ..outcomes import Outcomes
from ..router import Route, Router
from ..settings import StreamflowSettings
from ..telemetry import process_span, record_failure
from .decide import Decision, Verdict, decide

log = logging.getLogger("streamflow.worker")

TRACEBACK_CHARS = 4000


async def call_handler(route: Route, job: Job, timeout: float | None,
                       limiter: anyio.CapacityLimiter) -> Any:
    """``route``'s handler on ``job``; ``JobTimeout`` when it ran past ``timeout`` seconds.

    Only the worker's own deadline becomes a ``JobTimeout``: a ``TimeoutError`` the handler
    raises itself goes on as it is.
    """
    if timeout is None:
        if route.is_async:
            return await route.handler(job)
        return await anyio.to_thread.run_sync(route.handler, job, limiter=limiter)
    with anyio.move_on_after(timeout) as deadline:
        if route.is_async:
            return await route.handler(job)
        return await anyio.to_thread.run_sync(route.handler, job, abandon_on_cancel=True,
                                              limiter=limiter)
    if deadline.cancelled_caught:
        raise JobTimeout(timeout)
    raise AssertionError("unreachable: the handler neither returned nor timed out")


class JobRunner:
    """Runs jobs and records their outcomes; counts processed and failed runs."""

    def __init__(self, router: Router, settings: StreamflowSettings, outcomes: Outcomes,
                 concurrency: int, *, group: str, consumer: str,
                 release: Callable[[Job], None], flush_wanted: Callable[[], None],
                 promote_wanted: Callable[[], None],
                 limit_queue: Callable[[float], None]) -> None:
        self.router = router
        self.settings = settings
        self.outcomes = outcomes
        self.tracing = False
        self.processed = 0
        self.failed = 0
        self._group = group
        self._consumer = consumer
        self._release = release
        self._flush_wanted = flush_wanted
        self._promote_wanted = promote_wanted
        self._limit_queue = limit_queue
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._level_of = {level: i for i, level in enumerate(settings.levels)}
        self.cancels: CancelWatcher | None = None
        """Set by the worker: the cancel requests of operators reach the runs through it."""
        defaults = settings.queue
        self._default_backoff = Backoff(defaults.backoff, defaults.backoff_delay,
                                        defaults.backoff_max)

    async def _call(self, route: Route, job: Job, timeout: float | None) -> Any:
        cancels = self.cancels
        if cancels is None:
            return await call_handler(route, job, timeout, self._limiter)
        key = (self._level_of[job.level], job.entry_id)
        cancels.track(key)
        try:
            return await call_handler(route, job, timeout, self._limiter)
        except CancelledError:
            if cancels.cancelled(key):
                raise JobCancelled(f"cancelled by an operator (job {job.id})") from None
            raise
        finally:
            cancels.untrack(key)

    async def run(self, job: Job) -> None:
        """Run ``job`` to its outcome; never raises for the job's own errors."""
        route = self.router.resolve(job.name)
        started = time.perf_counter()
        log_token = bind_job(job)
        timeout = job.options.timeout or self.settings.queue.timeout
        try:
            if route is None:
                self._to_dead(job, "no_handler", f"no handler for job name {job.name!r}", "")
                return
            if self.tracing:
                with process_span(job.queue, self._group, self._consumer, job.id, job.name,
                                  job.attempt, job.level, job.traceparent,
                                  job.tracestate) as span:
                    try:
                        result = await self._call(route, job, timeout)
                    except Exception as exc:
                        self.failed_run(job, exc, span)
                        return
            else:
                try:
                    result = await self._call(route, job, timeout)
                except Exception as exc:
                    self.failed_run(job, exc, None)
                    return
            self.outcomes.completed(job, int((time.perf_counter() - started) * 1000), result)
            self.processed += 1
        finally:
            unbind_job(log_token)
            self._release(job)
            self._flush_wanted()

    def failed_run(self, job: Job, exc: Exception, span: Any) -> Decision:
        """Record the fate of ``job``, whose handler raised ``exc``."""
        decision = decide(exc, attempt=job.attempt,
                          attempts=job.options.attempts or self.settings.queue.attempts,
                          backoff=job.options.backoff or self._default_backoff)
        if span is not None:
            record_failure(span, exc, decision.verdict.value)
        if decision.verdict is Verdict.RATE_LIMITED:
            self._retry(job, decision, spend_attempt=False)
            if decision.queue_wide:
                self._limit_queue(decision.delay)
            return decision
        self.failed += 1
        self.outcomes.metrics.failed(job.level, job.name)
        if decision.verdict is Verdict.DEAD:
            tb = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
            self._to_dead(job, decision.reason, decision.error, tb)
            return decision
        log.info("job %s (%s) attempt %d failed: %s; retrying in %.2fs", job.id, job.name,
                 job.attempt, decision.error, decision.delay)
        self.outcomes.metrics.retried(job.level, job.name)
        self._retry(job, decision)
        return decision

    def _retry(self, job: Job, decision: Decision, *, spend_attempt: bool = True) -> None:
        self.outcomes.retry(job, decision.delay, decision.error, decision.verdict.value,
                            spend_attempt=spend_attempt)
        if decision.delay < self.settings.worker.promote_interval:
            self._promote_wanted()

    def _to_dead(self, job: Job, reason: str, error: str, tb: str) -> None:
        log.warning("job %s (%s) dead-lettered after attempt %d: %s: %s", job.id, job.name,
                    job.attempt, reason, error)
        self.outcomes.dead(job, reason, error, tb)
