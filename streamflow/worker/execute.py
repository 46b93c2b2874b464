"""Running one job: resolve its handler, call it (async on the loop, sync on a daemon thread, or
anything in a child process under ``isolation="process"``) under its deadline, and turn what
happened into an outcome for the acker."""

from __future__ import annotations

import logging
import os
import traceback
from asyncio import CancelledError
from collections.abc import Callable
from time import perf_counter
from typing import Any

import anyio

from ..backoff import Backoff
from ..cancel import CancelWatcher
from ..connection import redact
from ..errors import HandlerError, JobCancelled, JobCrashed, JobTimeout
from ..job import Job
from ..logs import bind_job, unbind_job
from ..outcomes import Outcomes
from ..router import Route, Router
from ..settings import StreamflowSettings
from ..telemetry import process_span, record_failure
from .decide import Decision, Verdict, decide
from .isolation import ProcessPool
from .threads import HandlerThreads

log = logging.getLogger("streamflow.worker")

TRACEBACK_CHARS = 4000


class JobRunner:
    """Runs jobs and records their outcomes; counts processed and failed runs."""

    def __init__(self, router: Router, settings: StreamflowSettings, outcomes: Outcomes,
                 concurrency: int, *, group: str, consumer: str,
                 release: Callable[[Job], None], flush_wanted: Callable[[], None],
                 promote_wanted: Callable[[], None],
                 limit_queue: Callable[[float], None], stop: Callable[[], None]) -> None:
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
        self._level_of = {level: i for i, level in enumerate(settings.levels)}
        self.cancels: CancelWatcher | None = None
        """Set by the worker: the cancel requests of operators reach the runs through it."""
        ws = settings.worker
        self.threads = HandlerThreads(ws.max_abandoned_threads, exhausted=stop,
                                      on_abandoned=self._abandoned)
        self.pool: ProcessPool | None = None
        if ws.isolation == "process":
            self.pool = ProcessPool(router, min(concurrency, ws.isolation_processes
                                                or os.cpu_count() or 1),
                                    on_crash=lambda: self.outcomes.metrics.child_crashed())
        defaults = settings.queue
        self._default_backoff = Backoff(defaults.backoff, defaults.backoff_delay,
                                        defaults.backoff_max)

    async def _call(self, route: Route, job: Job, timeout: float | None) -> Any:
        cancels = self.cancels
        if cancels is None:
            return await self.call_handler(route, job, timeout)
        key = (self._level_of[job.level], job.entry_id)
        cancels.track(key)
        try:
            return await self.call_handler(route, job, timeout)
        except CancelledError:
            if cancels.cancelled(key):
                raise JobCancelled(f"cancelled by an operator (job {job.id})") from None
            raise
        finally:
            cancels.untrack(key)

    async def start(self) -> None:
        """Start the child processes (process isolation)."""
        if self.pool is not None:
            await self.pool.start()

    async def close(self) -> None:
        """Stop the child processes; idle handler threads end."""
        self.threads.close()
        if self.pool is not None:
            await self.pool.close()

    async def call_handler(self, route: Route, job: Job, timeout: float | None) -> Any:
        """``route``'s handler on ``job``; ``JobTimeout`` when it ran past ``timeout`` seconds.

        Only the worker's own deadline becomes a ``JobTimeout``: a ``TimeoutError`` the handler
        raises itself goes on as it is.
        """
        if self.pool is not None:
            return await self.pool.run(route, job, timeout)
        if timeout is None:
            if route.is_async:
                return await route.handler(job)
            return await self.threads.run(route.handler, job)
        with anyio.move_on_after(timeout) as deadline:
            if route.is_async:
                return await route.handler(job)
            return await self.threads.run(route.handler, job)
        if deadline.cancelled_caught:
            raise JobTimeout(timeout)
        raise AssertionError("unreachable: the handler neither returned nor timed out")

    async def run(self, job: Job) -> None:
        """Run ``job`` to its outcome; never raises for the job's own errors."""
        route = self.router.resolve(job.name)
        started = perf_counter()
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
                    except BaseException as exc:
                        self._failed(job, exc, span)
                        return
            else:  # _call and call_handler inlined: this is the hot path
                cancels = self.cancels
                key = (self._level_of[job.level], job.entry_id)
                if cancels is not None:
                    cancels.track(key)
                try:
                    if timeout is None and route.is_async and self.pool is None:
                        result = await route.handler(job)
                    else:
                        result = await self.call_handler(route, job, timeout)
                except BaseException as exc:
                    if (cancels is not None and isinstance(exc, CancelledError)
                            and cancels.cancelled(key)):
                        exc = JobCancelled(f"cancelled by an operator (job {job.id})")
                    self._failed(job, exc, None)
                    return
                finally:
                    if cancels is not None:
                        cancels.untrack(key)
            self.outcomes.completed(job, int((perf_counter() - started) * 1000), result)
            self.processed += 1
        finally:
            unbind_job(log_token)
            self._release(job)
            self._flush_wanted()

    def _failed(self, job: Job, exc: BaseException, span: Any) -> None:
        # SystemExit and KeyboardInterrupt raised by a handler fail its job, not the worker;
        # only the worker's own cancellation (shutdown grace over) goes on
        if isinstance(exc, anyio.get_cancelled_exc_class() | GeneratorExit):
            raise exc
        self.failed_run(job, exc, span)

    def failed_run(self, job: Job, exc: BaseException, span: Any) -> Decision:
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
            if isinstance(exc, HandlerError | JobCrashed):  # the parent's stack tells nothing
                tb = exc.traceback if isinstance(exc, HandlerError) else ""
            else:
                tb = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
            self._to_dead(job, decision.reason, decision.error, redact(tb))
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

    def _abandoned(self, delta: int) -> None:
        self.outcomes.metrics.abandoned_threads(delta)

    def _to_dead(self, job: Job, reason: str, error: str, tb: str) -> None:
        log.warning("job %s (%s) dead-lettered after attempt %d: %s: %s", job.id, job.name,
                    job.attempt, reason, error)
        self.outcomes.dead(job, reason, error, tb)
