"""Worker: a consumer-group runner.

One anyio task group holds the fetch loop, ``concurrency`` runners, the ack flusher and the
background loops (promoter, reclaimer with keep-alive, heartbeat, janitor). The fetcher reads
only as many entries as there is free capacity, highest level first; runners hand finished jobs
to the flusher, which acknowledges them (with events, results, retries and dead letters) in one
pipeline per round.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from anyio.abc import TaskStatus
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import scripts
from .backoff import Backoff
from .codec import MalformedEntry, decode_job, pairs
from .connection import create_client, redact, warn_if_evicting
from .errors import ConfigurationError, Discard, RateLimited, Retry
from .job import Job
from .keys import QueueKeys
from .logs import bind_job, unbind_job
from .metrics import metrics_for
from .outcomes import Outcomes, dead_retention
from .progress import progress_reporter
from .queue import ensure_groups
from .reclaimer import keep_alive, reclaim_stalled
from .repeat import schedule_repeats
from .retention import remove_gone_consumers, trim_streams
from .router import Route, Router, as_router
from .scheduler import promote_due
from .settings import StreamflowSettings, resolve_settings, to_seconds
from .telemetry import process_span, record_failure, tracing_active

log = logging.getLogger("streamflow.worker")

TRACEBACK_CHARS = 4000
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError)


class Worker:
    """Runs handlers for the jobs of one queue, as one consumer of a consumer group.

    Usage::

        router = Router()

        @router.handler("payment.captured")
        async def captured(job: Job) -> None: ...

        worker = Worker("payments", router, url="redis://localhost:6379", concurrency=50)
        await worker.run()        # until SIGTERM/SIGINT or ``await worker.close()``

    A handler returns a result (kept in the ``done`` stream), raises ``Retry`` to run again
    later, ``Discard`` to dead-letter the job at once, or any other exception to retry with
    the job's backoff until its attempts run out.
    """

    def __init__(self, queue: str, handler: Router | Callable[[Job], Any], *,
                 url: str | None = None, settings: StreamflowSettings | None = None,
                 client: Any = None, concurrency: int | None = None, group: str | None = None,
                 consumer: str | None = None) -> None:
        self.settings = resolve_settings(url, settings)
        ws = self.settings.worker
        self.queue = queue
        self.keys = QueueKeys(queue, self.settings.prefix, tuple(self.settings.levels))
        self.router: Router = as_router(handler)
        self.concurrency = concurrency or ws.concurrency
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        self.group = group or ws.group
        self.consumer = consumer or ws.consumer or (
            f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}")
        if ws.block_ms >= self.settings.redis.socket_timeout * 1000:
            raise ConfigurationError("worker.block_ms must stay below redis.socket_timeout")
        self.processed = 0
        self.failed = 0
        self._client = client
        self._own_client = client is None
        defaults = self.settings.queue
        self._default_backoff = Backoff(defaults.backoff, defaults.backoff_delay,
                                        defaults.backoff_max)
        self._stopping = anyio.Event()
        self._stopped = anyio.Event()
        self._held: set[tuple[int, str]] = set()  # (level, entry id) fetched, not finished
        self._capacity = anyio.Event()
        self._flush_wanted = anyio.Event()
        self._promote_wanted = anyio.Event()
        self._ready: deque[Job] = deque()
        self._idle: list[anyio.Event] = []
        self._in_transit = 0
        self._fetch_done = False
        self._thread_limiter = anyio.CapacityLimiter(self.concurrency)
        self._tracing = False
        self._metrics = metrics_for(queue)
        self._outcomes = Outcomes(self.keys, self.group, self.settings, self._metrics)
        self._progress: Any = None
        self._started_ms = 0
        self._fetching = False
        self._grace_over = anyio.Event()
        self._limited_until = 0.0
        self._fetch_scope: anyio.CancelScope | None = None
        self._fetch_failing = False
        self._status_ttl_ms = int(self.settings.queue.dedup_ttl * 1000)  # dedup marks of repeats
        self._unflushed: list[scripts.Command] = []
        self._level_of = {level: i for i, level in enumerate(self.keys.levels)}

    @property
    def client(self) -> Any:
        """The Redis client (created on first use)."""
        if self._client is None:
            self._client = create_client(
                self.settings.redis, max_connections=self.concurrency + 16,
                client_name=f"streamflow-worker-{self.consumer}")
        return self._client

    @property
    def ready(self) -> bool:
        """True while the worker is fetching (for readiness probes)."""
        return self._fetching and not self._stopping.is_set()

    @property
    def stopped(self) -> bool:
        """True once ``run()`` has returned."""
        return self._stopped.is_set()

    async def close(self) -> None:
        """Stop fetching, finish in-flight jobs within the grace period, flush, deregister."""
        self._stopping.set()
        if self._started_ms:
            await self._stopped.wait()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until ``close()`` or, when ``handle_signals`` and in the main thread, until
        SIGTERM/SIGINT (a second signal skips the grace period)."""
        self._started_ms = int(time.time() * 1000)
        self._tracing = tracing_active()
        self._metrics = metrics_for(self.queue)
        self._outcomes.metrics = self._metrics
        try:
            await self._setup()
            async with self.router.resources(), anyio.create_task_group() as background:
                if handle_signals and threading.current_thread() is threading.main_thread():
                    await background.start(self._watch_signals)
                background.start_soon(self._flush_loop)
                background.start_soon(self._promote_loop)
                background.start_soon(self._reclaim_loop)
                background.start_soon(self._heartbeat_loop)
                background.start_soon(self._janitor_loop)
                background.start_soon(self._metrics.refresh_gauges, self.client, self.keys,
                                      self.group)
                async with anyio.create_task_group() as work:
                    background.start_soon(self._enforce_grace, work.cancel_scope)
                    work.start_soon(self._fetch_loop)
                    for _ in range(self.concurrency):
                        work.start_soon(self._runner)
                with anyio.CancelScope(shield=True):
                    await self._final_flush()
                background.cancel_scope.cancel()
        finally:
            self._stopping.set()
            self._stopped.set()
            if self._own_client and self._client is not None:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()
                self._client = None

    async def _setup(self) -> None:
        client = self.client
        await client.ping()
        await warn_if_evicting(client)
        await ensure_groups(client, self.keys, self.group)
        await scripts.load_scripts(client)
        self._progress = progress_reporter(client, self.keys, self.settings.queue)
        await self._heartbeat()
        log.info("worker %s started on %s queue=%s group=%s concurrency=%d", self.consumer,
                 redact(self.settings.redis.url), self.queue, self.group, self.concurrency)

    # -- fetching ---------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        ws = self.settings.worker
        streams = {stream: ">" for stream in self.keys.streams}
        fetch_keys = [self.keys.meta, self.keys.limiter, *self.keys.streams]
        level_of = {stream.encode(): i for i, stream in enumerate(self.keys.streams)}
        failures = 0
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self._held)
                if free <= 0:
                    self._capacity = anyio.Event()
                    with anyio.move_on_after(1.0):
                        await self._capacity.wait()
                    continue
                count = min(free, ws.batch_size)
                limited = self._limited_until - time.time()
                if limited > 0:
                    with anyio.move_on_after(limited):
                        await self._stopping.wait()
                    continue
                with anyio.CancelScope() as self._fetch_scope:
                    try:
                        reply = await scripts.call(
                            self.client, scripts.FETCH_JOBS, fetch_keys,
                            [self.group, self.consumer, count, int(time.time() * 1000)])
                        self._fetching = True
                        self._fetch_failing = False
                        if isinstance(reply, int):  # 0: paused; -W: rate limited for W ms
                            wait = -reply / 1000 if reply < 0 else ws.block_ms / 1000
                            with anyio.move_on_after(min(wait, 1.0)):
                                await self._stopping.wait()
                            continue
                        if reply:
                            for i in range(0, len(reply), 2):
                                self._dispatch(int(reply[i]), reply[i + 1])
                            failures = 0
                            continue
                        blocked = await self.client.xreadgroup(
                            self.group, self.consumer, streams, count=count, block=ws.block_ms)
                        for stream, entries in blocked or ():
                            self._dispatch(level_of[stream], entries)
                        failures = 0
                        if blocked:  # let the runners start these before we fetch again
                            await anyio.lowlevel.checkpoint()
                    except (*REDIS_ERRORS, ResponseError) as exc:
                        if isinstance(exc, NoPermissionError):
                            raise  # a worker without the rights it needs must stop, loudly
                        self._fetching = False
                        self._fetch_failing = True
                        failures += 1
                        await self._survive("fetch", exc, min(0.1 * 2**failures, 5.0))
        finally:
            self._fetch_done = True
            for event in self._idle:
                self._in_transit += 1
                event.set()
            self._idle.clear()

    def _dispatch(self, level: int, entries: list[Any]) -> None:
        held = self._held
        ready = self._ready
        queue = self.queue
        level_name = self.keys.levels[level]
        for entry_id, raw in entries:
            fields = raw if isinstance(raw, dict) else pairs(raw)
            try:
                job = decode_job(entry_id, fields, queue, level_name)
            except MalformedEntry as exc:
                entry = entry_id.decode()
                log.warning("malformed entry %s dead-lettered: %s", entry, exc)
                self._outcomes.dead_entry(level, entry, f"{level_name}:{entry}", "malformed",
                                          str(exc), "", fields)
                self._flush_wanted.set()
                continue
            job._progress = self._progress
            held.add((level, job.entry_id))
            ready.append(job)
            if job.options.track:
                self._outcomes.started(job, self.consumer)
                self._flush_wanted.set()
        self._wake()

    def _wake(self) -> None:
        # Wake one idle runner at a time: a runner whose handler does not suspend goes on with
        # the next job itself, so a batch costs a couple of wake-ups, not one per job.
        if self._in_transit == 0 and self._idle and self._ready:
            self._in_transit += 1
            self._idle.pop().set()

    # -- running ----------------------------------------------------------------------------

    async def _runner(self) -> None:
        ready = self._ready
        while True:
            if ready:
                job = ready.popleft()
                if ready:
                    self._wake()
                await self._run(job)
                continue
            if self._fetch_done:
                return
            event = anyio.Event()
            self._idle.append(event)
            await event.wait()
            self._in_transit -= 1

    async def _run(self, job: Job) -> None:
        route = self.router.resolve(job.name)
        started = time.perf_counter()
        log_token = bind_job(job)
        try:
            if route is None:
                self._to_dead(job, "no_handler", f"no handler for job name {job.name!r}", "")
                return
            if self._tracing:
                with process_span(self.queue, self.group, self.consumer, job.id, job.name,
                                  job.attempt, job.level, job.traceparent,
                                  job.tracestate) as span:
                    try:
                        result = await self._call(route, job)
                    except Exception as exc:
                        self._failed(job, exc, span)
                        return
            else:
                try:
                    result = await self._call(route, job)
                except Exception as exc:
                    self._failed(job, exc, None)
                    return
            self._outcomes.completed(job, int((time.perf_counter() - started) * 1000), result)
            self.processed += 1
        finally:
            unbind_job(log_token)
            self._release(job)

    async def _call(self, route: Route, job: Job) -> Any:
        timeout = job.options.timeout or self.settings.queue.timeout
        if timeout is None:
            if route.is_async:
                return await route.handler(job)
            return await anyio.to_thread.run_sync(route.handler, job,
                                                  limiter=self._thread_limiter)
        with anyio.fail_after(timeout):
            if route.is_async:
                return await route.handler(job)
            return await anyio.to_thread.run_sync(route.handler, job, abandon_on_cancel=True,
                                                  limiter=self._thread_limiter)

    def _release(self, job: Job) -> None:
        self._held.discard((self._level_of[job.level], job.entry_id))
        self._capacity.set()
        self._flush_wanted.set()

    def _failed(self, job: Job, exc: Exception, span: Any) -> None:
        self.failed += 1
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, TimeoutError):
            limit = job.options.timeout or self.settings.queue.timeout or 0
            error = f"timeout: the handler ran longer than {limit:g}s"
        tb = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
        if isinstance(exc, RateLimited):
            delay = to_seconds(exc.delay)
            self._outcome(span, exc, "rate_limited")
            self._retry(job, delay, error, "rate_limited", spend_attempt=False)
            if exc.queue:
                until = time.time() + delay
                self._limited_until = until  # this worker stops at once, before the flush
                self._outcomes.command("HSET", self.keys.meta, "limited_until",
                                       int(until * 1000))
            return
        self._metrics.failed(job.level, job.name)
        if isinstance(exc, Discard):
            self._outcome(span, exc, "dead")
            self._to_dead(job, "discarded", exc.reason, tb)
            return
        attempts = job.options.attempts or self.settings.queue.attempts
        if job.attempt >= attempts:
            self._outcome(span, exc, "dead")
            self._to_dead(job, "failed", error, tb)
            return
        backoff = job.options.backoff or self._default_backoff
        if isinstance(exc, Retry) and exc.delay is not None:
            delay = to_seconds(exc.delay)
        else:
            delay = backoff.seconds(job.attempt)
        self._outcome(span, exc, "retrying")
        log.info("job %s (%s) attempt %d failed: %s; retrying in %.2fs", job.id, job.name,
                 job.attempt, error, delay)
        self._metrics.retried(job.level, job.name)
        self._retry(job, delay, error, "retrying")

    def _outcome(self, span: Any, exc: Exception, outcome: str) -> None:
        if span is not None:
            record_failure(span, exc, outcome)

    def _retry(self, job: Job, delay: float, error: str, event: str, *,
               spend_attempt: bool = True) -> None:
        self._outcomes.retry(job, delay, error, event, spend_attempt=spend_attempt)
        if delay < self.settings.worker.promote_interval:
            self._promote_wanted.set()

    def _to_dead(self, job: Job, reason: str, error: str, tb: str) -> None:
        log.warning("job %s (%s) dead-lettered after attempt %d: %s: %s", job.id, job.name,
                    job.attempt, reason, error)
        self._outcomes.dead(job, reason, error, tb)
        self._flush_wanted.set()

    # -- acknowledging ----------------------------------------------------------------------

    async def _flush(self, commands: list[scripts.Command]) -> None:
        results = await scripts.pipeline(self.client, commands)
        for command, result in zip(commands, results, strict=True):
            if isinstance(result, REDIS_ERRORS):
                raise result
            if isinstance(result, Exception):
                log.error("ack command failed: %s (%s)", result, command[0])

    async def _flush_loop(self) -> None:
        failures = 0
        pending: list[scripts.Command] = []
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            pending += self._outcomes.take()
            if not pending:
                continue
            try:
                await self._flush(pending)
                pending = []
                failures = 0
            except REDIS_ERRORS as exc:
                failures += 1
                delay = min(0.05 * 2**failures, 5.0)
                log.warning("ack flush failed (%s); %d commands kept, retrying in %.2fs",
                            exc, len(pending), delay)
                self._flush_wanted.set()
                await anyio.sleep(delay)
            finally:
                self._unflushed = pending

    async def _final_flush(self) -> None:
        commands = [*self._unflushed, *self._outcomes.take()]
        self._unflushed = []
        for attempt in range(5):
            try:
                await self._flush(commands)
                break
            except REDIS_ERRORS as exc:
                log.warning("final ack flush failed (%s), attempt %d", exc, attempt + 1)
                await anyio.sleep(0.2 * 2**attempt)
        with contextlib.suppress(*REDIS_ERRORS), anyio.move_on_after(1.0):
            await self.client.hdel(self.keys.workers, self.consumer)  # the janitor would, too
        log.info("worker %s stopped: %d processed, %d failed", self.consumer, self.processed,
                 self.failed)

    # -- shutdown ---------------------------------------------------------------------------

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                if self._stopping.is_set():
                    log.warning("second signal: stopping now without waiting for jobs")
                    self._grace_over.set()
                    return
                log.info("signal %s: stopping after in-flight jobs", signal.Signals(signum).name)
                self._stopping.set()

    async def _enforce_grace(self, work: anyio.CancelScope) -> None:
        await self._stopping.wait()
        self._capacity.set()
        if self._fetch_failing and self._fetch_scope is not None:
            # Redis is unreachable: do not wait out the client's retries to notice the stop
            self._fetch_scope.cancel()
        with anyio.move_on_after(self.settings.worker.shutdown_grace):
            await self._grace_over.wait()
        if self._held:
            log.warning("shutdown grace over: %d jobs left unfinished stay pending and will be "
                        "reclaimed by another worker", len(self._held))
        work.cancel()

    # -- background loops -------------------------------------------------------------------

    async def _promote_loop(self) -> None:
        ws = self.settings.worker
        next_repeat_check = 0.0
        while True:
            try:
                if time.monotonic() >= next_repeat_check:
                    next_repeat_check = time.monotonic() + 1.0
                    await schedule_repeats(
                        self.client, self.keys, level_of=self._level_of,
                        default_level=self._level_of[self.settings.default_level],
                        dedup_ttl_ms=self._status_ttl_ms, emit=self.settings.queue.emit_all,
                        events_maxlen=self.settings.queue.events_maxlen,
                        max_payload_bytes=self.settings.queue.max_payload_bytes)
                moved, next_due = await promote_due(
                    self.client, self.keys, emit=self.settings.queue.emit_all,
                    events_maxlen=self.settings.queue.events_maxlen)
            except (*REDIS_ERRORS, ResponseError) as exc:
                moved, next_due = 0, -1
                await self._survive("promoter", exc, 1.0)
            if moved >= 1000:
                continue
            wait = ws.promote_interval
            if next_due > 0:
                wait = min(wait, max(next_due / 1000 - time.time(), 0.001))
            self._promote_wanted = anyio.Event()
            with anyio.move_on_after(wait):
                await self._promote_wanted.wait()

    async def _reclaim_loop(self) -> None:
        ws = self.settings.worker
        stalled_ms = int(ws.stalled_interval * 1000)
        tick = ws.stalled_interval / 3
        last_reclaim = 0.0
        while True:
            await anyio.sleep(tick)
            try:
                await keep_alive(self.client, self.keys, group=self.group,
                                 consumer=self.consumer, held=self._held_items(),
                                 min_idle_ms=int(tick * 1000))
                if time.monotonic() - last_reclaim >= ws.stalled_interval:
                    last_reclaim = time.monotonic()
                    await self._reclaim(stalled_ms)
            except (*REDIS_ERRORS, ResponseError) as exc:
                await self._survive("reclaimer", exc, 1.0)

    def _held_items(self) -> list[tuple[int, str]]:
        return list(self._held)

    async def _reclaim(self, stalled_ms: int) -> int:
        claimed_total = 0
        for level in range(len(self.keys.streams)):
            free = self.concurrency - len(self._held)
            if free <= 0 or self._fetch_done or self._stopping.is_set():
                break
            claimed, dead = await reclaim_stalled(
                self.client, self.keys, level, group=self.group, consumer=self.consumer,
                min_idle_ms=stalled_ms, count=min(free, 100),
                max_stalled=self.settings.worker.max_stalled_count,
                emit=self.settings.queue.emit_failures,
                events_maxlen=self.settings.queue.events_maxlen,
                dead_retention=dead_retention(self.settings.queue))
            if dead:
                self._metrics.dead(self.keys.levels[level], None, "stalled", dead)
                log.warning("%d stalled entries of %s dead-lettered", dead,
                            self.keys.levels[level])
            if claimed:
                self._metrics.reclaimed(self.keys.levels[level], len(claimed))
                log.info("reclaimed %d stalled entries of %s", len(claimed),
                         self.keys.levels[level])
                self._dispatch(level, claimed)
                claimed_total += len(claimed)
        return claimed_total

    async def _heartbeat(self) -> None:
        now = int(time.time() * 1000)
        await self.client.hset(self.keys.workers, self.consumer, orjson.dumps({
            "host": socket.gethostname(), "pid": os.getpid(), "concurrency": self.concurrency,
            "group": self.group, "started_ms": self._started_ms, "last_seen_ms": now,
            "processed": self.processed, "failed": self.failed, "active": len(self._held),
        }))

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.settings.worker.heartbeat_interval)
            try:
                await self._heartbeat()
            except (*REDIS_ERRORS, ResponseError) as exc:
                await self._survive("heartbeat", exc, 1.0)

    async def _janitor_loop(self) -> None:
        ws = self.settings.worker
        stale_ms = int(max(ws.heartbeat_interval * 6, ws.stalled_interval * 2) * 1000)
        last_cleanup = time.monotonic()
        while True:
            await anyio.sleep(min(ws.janitor_interval, 1.0))
            try:
                await trim_streams(self.client, self.keys)
                if time.monotonic() - last_cleanup >= ws.janitor_interval:
                    last_cleanup = time.monotonic()
                    removed = await remove_gone_consumers(self.client, self.keys, self.group,
                                                          stale_after_ms=stale_ms)
                    if removed:
                        log.info("removed consumers that are gone: %s", ", ".join(removed))
            except (*REDIS_ERRORS, ResponseError) as exc:
                await self._survive("janitor", exc, 1.0)

    async def _survive(self, loop: str, exc: Exception, delay: float) -> None:
        """A loop met a Redis error: log it, recreate the groups if they vanished (a failover
        to a replica that had not received them, or an obliterated queue), and wait a little.
        A worker never exits because its master moved."""
        log.warning("%s: %s: %s; retrying in %.1fs", loop, type(exc).__name__, exc, delay)
        await anyio.sleep(delay)
        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            with contextlib.suppress(*REDIS_ERRORS, ResponseError):
                await ensure_groups(self.client, self.keys, self.group)
                log.warning("consumer group %r was missing; created it again", self.group)
