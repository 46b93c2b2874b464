"""The background loops of a worker: promoter, reclaimer with keep-alive, heartbeat, janitor.

Each is started with ``task_group.start`` and reports ``task_status.started()`` once it runs.
A Redis error never ends a loop: it is logged, and the loop waits a little and goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import orjson
from anyio.abc import TaskStatus
from redis.exceptions import ResponseError

from .. import scripts
from ..keys import QueueKeys
from ..metrics import NoMetrics
from ..outcomes import dead_retention
from ..queue import ensure_groups
from ..queue.ordered import release_stalled
from ..reclaimer import keep_alive, reclaim_stalled
from ..repeat import schedule_repeats
from ..retention import remove_gone_consumers, trim_streams
from ..scheduler import promote_due
from ..settings import StreamflowSettings
from ..transient import PASSING, REDIS_ERRORS, passes
from .dispatch import Dispatcher

log = logging.getLogger("streamflow.worker")

RECLAIM_BATCH = 1000
"""Stalled entries looked at per call of the reclaim script."""
RECLAIM_ROUNDS = 10
"""Calls per level and check: up to 10,000 stalled entries of a level are taken at once."""


class Maintenance:
    """The loops that keep a queue healthy, run by every worker."""

    def __init__(self, keys: QueueKeys, settings: StreamflowSettings, dispatcher: Dispatcher,
                 *, group: str, consumer: str, stopping: anyio.Event,
                 counters: Callable[[], tuple[int, int]]) -> None:
        self.keys = keys
        self.client: Any = None
        self.metrics: NoMetrics = NoMetrics()
        self.started_ms = 0
        self._settings = settings
        self._dispatcher = dispatcher
        self._group = group
        self._consumer = consumer
        self._stopping = stopping
        self._counters = counters
        self._promote_wanted = anyio.Event()
        self._level_of = {level: i for i, level in enumerate(keys.levels)}

    def promote_wanted(self) -> None:
        """Run the promoter soon (a retry is due sooner than its next round)."""
        self._promote_wanted.set()

    async def promoter(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                       ) -> None:
        """Due delayed jobs and repeat ticks -> their level streams."""
        settings = self._settings
        defaults = settings.queue
        next_repeat_check = 0.0
        task_status.started()
        while True:
            try:
                if time.monotonic() >= next_repeat_check:
                    next_repeat_check = time.monotonic() + 1.0
                    await schedule_repeats(
                        self.client, self.keys, level_of=self._level_of,
                        default_level=self._level_of[settings.default_level],
                        dedup_ttl_ms=int(defaults.dedup_ttl * 1000), emit=defaults.emit_all,
                        events_maxlen=defaults.events_maxlen,
                        max_payload_bytes=defaults.max_payload_bytes)
                moved, next_due = await promote_due(
                    self.client, self.keys, emit=defaults.emit_all,
                    events_maxlen=defaults.events_maxlen, dead_retention=dead_retention(defaults))
            except PASSING as exc:
                if not passes(exc):
                    raise
                moved, next_due = 0, -1
                await self.survive("promoter", exc, 1.0)
            if moved >= 1000:
                continue
            wait = settings.worker.promote_interval
            if next_due > 0:
                wait = min(wait, max(next_due / 1000 - time.time(), 0.001))
            self._promote_wanted = anyio.Event()
            with anyio.move_on_after(wait):
                await self._promote_wanted.wait()

    async def reclaimer(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                        ) -> None:
        """Keep our long jobs' entries fresh; take over stalled entries of others."""
        ws = self._settings.worker
        stalled_ms = int(ws.stalled_interval * 1000)
        tick = ws.stalled_interval / 3  # an entry stalls at most one tick before it is taken
        task_status.started()
        while True:
            await anyio.sleep(tick)
            try:
                await keep_alive(self.client, self.keys, group=self._group,
                                 consumer=self._consumer, held=list(self._dispatcher.held),
                                 min_idle_ms=int(tick * 1000))
                await self.reclaim(stalled_ms)
            except PASSING as exc:
                if not passes(exc):
                    raise
                await self.survive("reclaimer", exc, 1.0)

    async def reclaim(self, stalled_ms: int) -> int:
        """Claim the stalled entries of every level, however busy this worker is: they run
        before the entries already fetched, so a dead worker's jobs wait ``stalled_interval``
        plus one check, not for the backlog (the fetcher waits while this worker holds more
        than its concurrency)."""
        dispatcher = self._dispatcher
        defaults = self._settings.queue
        claimed_total = 0
        for level, name in enumerate(self.keys.levels):
            for _ in range(RECLAIM_ROUNDS):
                if dispatcher.finished or self._stopping.is_set():
                    return claimed_total
                claimed, dead = await reclaim_stalled(
                    self.client, self.keys, level, group=self._group, consumer=self._consumer,
                    min_idle_ms=stalled_ms, count=RECLAIM_BATCH,
                    max_stalled=self._settings.worker.max_stalled_count,
                    emit=defaults.emit_failures, events_maxlen=defaults.events_maxlen,
                    dead_retention=dead_retention(defaults))
                if dead:
                    self.metrics.dead(name, None, "stalled", dead)
                    log.warning("%d stalled entries of %s dead-lettered", dead, name)
                    await release_stalled(self.client, self.keys, dead, scripts.flag(
                        defaults.emit_all), defaults.events_maxlen)
                if claimed:
                    self.metrics.reclaimed(name, len(claimed))
                    log.info("reclaimed %d stalled entries of %s", len(claimed), name)
                    dispatcher.dispatch(level, claimed, first=True)
                    claimed_total += len(claimed)
                if len(claimed) + dead < RECLAIM_BATCH:
                    break
        return claimed_total

    async def heartbeat(self) -> None:
        """Write this worker's entry in the workers hash."""
        processed, failed = self._counters()
        await self.client.hset(self.keys.workers, self._consumer, orjson.dumps({
            "host": socket.gethostname(), "pid": os.getpid(),
            "concurrency": self._dispatcher.concurrency, "group": self._group,
            "started_ms": self.started_ms, "last_seen_ms": int(time.time() * 1000),
            "processed": processed, "failed": failed, "active": len(self._dispatcher.held),
        }))

    async def heartbeats(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                         ) -> None:
        """The heartbeat, every ``heartbeat_interval``."""
        task_status.started()
        while True:
            await anyio.sleep(self._settings.worker.heartbeat_interval)
            try:
                await self.heartbeat()
            except PASSING as exc:
                if not passes(exc):
                    raise
                await self.survive("heartbeat", exc, 1.0)

    async def janitor(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                      ) -> None:
        """Trim acknowledged entries; remove consumers that are gone and hold nothing."""
        ws = self._settings.worker
        stale_ms = int(max(ws.heartbeat_interval * 6, ws.stalled_interval * 2) * 1000)
        last_cleanup = time.monotonic()
        task_status.started()
        while True:
            await anyio.sleep(min(ws.janitor_interval, 1.0))
            try:
                await trim_streams(self.client, self.keys)
                if time.monotonic() - last_cleanup >= ws.janitor_interval:
                    last_cleanup = time.monotonic()
                    removed = await remove_gone_consumers(self.client, self.keys, self._group,
                                                          stale_after_ms=stale_ms)
                    if removed:
                        log.info("removed consumers that are gone: %s", ", ".join(removed))
            except PASSING as exc:
                if not passes(exc):
                    raise
                await self.survive("janitor", exc, 1.0)

    async def survive(self, loop: str, exc: Exception, delay: float) -> None:
        """A loop met a Redis error: log it, recreate the groups if they vanished (a failover
        to a replica that had not received them, or an obliterated queue), and wait a little.
        A worker never exits because its master moved."""
        log.warning("%s: %s: %s; retrying in %.1fs", loop, type(exc).__name__, exc, delay)
        await anyio.sleep(delay)
        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
            with contextlib.suppress(*REDIS_ERRORS, ResponseError):
                await ensure_groups(self.client, self.keys, self._group)
                log.warning("consumer group %r was missing; created it again", self._group)
