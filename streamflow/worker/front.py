"""The public front of a worker: construction, ``run``, ``close``, signals, shutdown order."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus
from redis.exceptions import OutOfMemoryError

from .. import scripts
from ..cancel import CancelWatcher
from ..connection import create_client, redact, warn_if_evicting
from ..errors import ConfigurationError
from ..job import Job
from ..joblog import log_writer
from ..keys import QueueKeys
from ..metrics import metrics_for
from ..outcomes import Outcomes
from ..progress import progress_reporter
from ..queue import ensure_groups
from ..router import Router, as_router
from ..settings import StreamflowSettings, resolve_settings
from ..telemetry import tracing_active
from ..transient import REDIS_ERRORS
from .acker import Acker
from .dispatch import Dispatcher
from .execute import JobRunner
from .fetcher import Fetcher
from .loops import Maintenance
from .partitioned import consumed_partitions, run_partitions

log = logging.getLogger("streamflow.worker")


class Worker:
    """Runs handlers for the jobs of one queue, as one consumer of a consumer group.

    Usage::

        router = Router()

        @router.handler("payment.captured")
        async def captured(job: Job) -> None: ...

        worker = Worker("payments", router, url="redis://localhost:6379", concurrency=50)
        await worker.run()        # until SIGTERM/SIGINT or ``await worker.close()``

    A handler returns a result (kept in the ``done`` stream), raises ``Retry`` to run again
    later, ``Discard`` to dead-letter the job at once, ``RateLimited`` to run again after a
    wait without spending an attempt, or any other exception to retry with the job's backoff
    until its attempts run out.

    On a partitioned queue (the count recorded by ``Queue``, or ``queue.partitions``) the
    worker consumes every partition, or those in ``partitions``, sharing its concurrency.
    """

    def __init__(self, queue: str, handler: Router | Callable[[Job], Any], *,
                 url: str | None = None, settings: StreamflowSettings | None = None,
                 client: Any = None, concurrency: int | None = None, group: str | None = None,
                 consumer: str | None = None, partitions: Sequence[int] | None = None,
                 partition: int | None = None) -> None:
        self.settings = resolve_settings(url, settings)
        ws = self.settings.worker
        self.queue = queue
        self.keys = QueueKeys(queue, self.settings.prefix, tuple(self.settings.levels),
                              partition)
        self.partition = partition
        """The one partition this worker consumes (None: the queue, all its partitions)."""
        self.partitions = tuple(partitions) if partitions is not None else None
        """The partitions to consume (None: all); ``--partitions 0-3`` in the CLI."""
        self.parts: list[Worker] = []
        """One worker per partition consumed, sharing this one's client and concurrency."""
        self.router: Router = as_router(handler)
        self.concurrency = concurrency or ws.concurrency
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        self.group = group or ws.group
        self.consumer = consumer or ws.consumer or (
            f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}")
        if ws.block_ms >= self.settings.redis.socket_timeout * 1000:
            raise ConfigurationError("worker.block_ms must stay below redis.socket_timeout")
        self._client = client
        self._own_client = client is None
        self._stopping = anyio.Event()
        self._stopped = anyio.Event()
        self._grace_over = anyio.Event()
        self._started_ms = 0
        self._outcomes = Outcomes(self.keys, self.group, self.settings,
                                 metrics_for(queue, partition))
        self._acker = Acker(None, self._outcomes)
        self.dispatcher = Dispatcher(self.keys, self.concurrency, self._outcomes,
                                     self._acker.wanted)
        self.maintenance = Maintenance(self.keys, self.settings, self.dispatcher,
                                       group=self.group, consumer=self.consumer,
                                       stopping=self._stopping, counters=self._counters)
        self.fetcher = Fetcher(self.keys, self.settings, self.dispatcher, group=self.group,
                               consumer=self.consumer, stopping=self._stopping,
                               survive=self.maintenance.survive)
        self._runner = JobRunner(self.router, self.settings, self._outcomes, self.concurrency,
                                 group=self.group, consumer=self.consumer,
                                 release=self.dispatcher.release, flush_wanted=self._acker.wanted,
                                 promote_wanted=self.maintenance.promote_wanted,
                                 limit_queue=self._limit_queue, stop=self._stopping.set)
        self.fetcher.acks = self._acker
        self.dispatcher.track_started = self._track_started
        self._cancels = CancelWatcher(None, self.keys)
        self._runner.cancels = self._cancels

    @property
    def client(self) -> Any:
        """The Redis client (created on first use)."""
        if self._client is None:
            self._client = create_client(
                self.settings.redis, max_connections=self.concurrency + 16,
                client_name=f"streamflow-worker-{self.consumer}")
        return self._client

    @property
    def processed(self) -> int:
        """Jobs whose handler returned."""
        return self._runner.processed + sum(part.processed for part in self.parts)

    @property
    def failed(self) -> int:
        """Runs that failed (a rate limit is not a failure)."""
        return self._runner.failed + sum(part.failed for part in self.parts)

    @property
    def ready(self) -> bool:
        """True while the worker is fetching (for readiness probes)."""
        if self.parts:
            return all(part.ready for part in self.parts) and not self._stopping.is_set()
        return self.fetcher.working and not self._stopping.is_set()

    @property
    def exhausted(self) -> bool:
        """True once the worker stopped itself because ``max_abandoned_threads`` handler
        threads outlived their deadline: it must be restarted (the CLI exits 1)."""
        threads = self._runner.threads
        return threads.abandoned >= threads.max_abandoned or any(
            part.exhausted for part in self.parts)

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
        SIGTERM/SIGINT (a second signal skips the grace period).

        Shutdown order: stop fetching; let in-flight jobs finish within ``shutdown_grace``;
        flush their outcomes (shielded); stop the background loops; deregister.
        """
        self._started_ms = int(time.time() * 1000)
        self._runner.tracing = tracing_active()
        metrics = metrics_for(self.queue, self.partition)
        self._outcomes.metrics = self.maintenance.metrics = metrics
        try:
            if self.partition is None:
                layout = await consumed_partitions(self)
                if layout is not None:
                    await run_partitions(self, *layout, handle_signals=handle_signals)
                    return
            await self._setup()
            maintenance = self.maintenance
            async with self.router.resources(), anyio.create_task_group() as background:
                if handle_signals and threading.current_thread() is threading.main_thread():
                    await background.start(self._watch_signals)
                await background.start(self._acker.loop)
                await background.start(maintenance.promoter)
                await background.start(maintenance.reclaimer)
                await background.start(maintenance.heartbeats)
                await background.start(maintenance.janitor)
                await background.start(partial(self._cancels.watch, survive=maintenance.survive))
                if self.partition is None:  # a partitioned worker sums all partitions
                    background.start_soon(metrics.refresh_gauges, self.client, self.keys,
                                          self.group)
                async with anyio.create_task_group() as work:
                    background.start_soon(self._enforce_grace, work.cancel_scope)
                    work.start_soon(self.fetcher.loop)
                    for _ in range(self.concurrency):
                        work.start_soon(self.dispatcher.runner, self._runner.run)
                with anyio.CancelScope(shield=True):
                    await self._final_flush()
                background.cancel_scope.cancel()
        finally:
            self._stopping.set()
            with anyio.CancelScope(shield=True):
                await self._runner.close()
            self._stopped.set()
            if self._own_client and self._client is not None:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()
                self._client = None

    async def _setup(self) -> None:
        client = self.client
        self._acker.client = self.fetcher.client = self.maintenance.client = client
        self.maintenance.started_ms = self._started_ms
        await client.ping()
        await warn_if_evicting(client)
        await ensure_groups(client, self.keys, self.group)
        await scripts.load_scripts(client)
        self.dispatcher.progress = progress_reporter(client, self.keys, self.settings.queue)
        self.dispatcher.log = log_writer(client, self.keys,
                                         int(self.settings.queue.dedup_ttl * 1000),
                                         self.settings.queue.log_lines)
        self._cancels.client = client
        await self._runner.start()
        try:
            await self.maintenance.heartbeat()
        except OutOfMemoryError:  # acks free memory: start anyway, the next heartbeat says so
            log.warning("Redis is full (maxmemory reached): starting without a heartbeat")
        log.info("worker %s started on %s queue=%s group=%s concurrency=%d", self.consumer,
                 redact(self.settings.redis.url), self.queue, self.group, self.concurrency)

    def _counters(self) -> tuple[int, int]:
        return self._runner.processed, self._runner.failed

    def _track_started(self, job: Job) -> None:
        self._outcomes.started(job, self.consumer)
        self._acker.wanted()

    def _limit_queue(self, delay: float) -> None:
        until = time.time() + delay
        self.fetcher.limited_until = until  # this worker stops at once, before the flush
        self._outcomes.command("HSET", self.keys.meta, "limited_until", int(until * 1000))

    async def _final_flush(self) -> None:
        await self._acker.final_flush()
        with contextlib.suppress(*REDIS_ERRORS), anyio.move_on_after(1.0):
            await self.client.hdel(self.keys.workers, self.consumer)  # the janitor would, too
        log.info("worker %s stopped: %d processed, %d failed", self.consumer, self.processed,
                 self.failed)

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
        self.dispatcher.capacity.set()
        self.fetcher.stop()
        with anyio.move_on_after(self.settings.worker.shutdown_grace):
            await self._grace_over.wait()
        if self.dispatcher.held:
            log.warning("shutdown grace over: %d jobs left unfinished stay pending and will be "
                        "reclaimed by another worker", len(self.dispatcher.held))
        work.cancel()
