"""The fetcher: the one path by which a worker takes new entries.

Only the fetch script claims entries; it applies the pause flag, the rate limit, strict
priority and the worker's free capacity. When every level is drained it also answers the last
id of each level stream, and the idle worker waits with ``XREAD BLOCK`` from exactly those ids:
XREAD claims nothing, it only says that something arrived. An entry added between the script's
answer and the XREAD has a higher id, so it wakes the XREAD at once; nothing is missed.

The idle worker writes the XREAD and its next fetch-script call in one write (``wake.py``):
Redis runs the call as soon as the XREAD returns, so a woken worker has its entries without a
second round trip. The call asks for the free capacity at the time of the write (it can only
grow while the worker waits); a partition sharing its worker's concurrency asks for one entry
and holds it while it waits (``_wait_count``). The herd: every idle worker wakes for an add;
one whose fetch then found the entry taken waits the plain way (XREAD, then a fetch after it,
as before) until one of its fetches claims something, so that one add does not cost every idle
worker an immediate fetch (``benchmarks/herd.py``). A Cluster client waits in a plain XREAD and
fetches after it; so does a wait after a lost connection, and a failed pipelined call (NOSCRIPT,
functions missing) is simply made again the usual way.

While paused or rate limited the worker does not wait on the streams (an add must not wake it
to be refused again): it asks again after the limit's wait or the pause check interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import anyio
import anyio.lowlevel
from redis.exceptions import NoPermissionError

from .. import scripts
from ..keys import QueueKeys
from ..protocol import NOTHING_WAITS
from ..settings import StreamflowSettings
from ..transient import MAYBE_LOST, PASSING, lost_connection, passes
from .acker import Acker
from .dispatch import Dispatcher
from .wake import FAILED, PipelinedWait

log = logging.getLogger("streamflow.worker")

PAUSE_CHECK_S = 1.0
"""Most seconds between two looks at a paused or rate-limited queue."""


class FetchState(StrEnum):
    """What the fetcher is doing now."""

    STARTING = "starting"
    FETCHING = "fetching"
    WAITING = "waiting"
    """Idle: nothing waits; blocked in XREAD on the level streams."""
    FULL = "full"
    PAUSED = "paused"
    LIMITED = "limited"
    FAILING = "failing"
    STOPPED = "stopped"


class Fetcher:
    """Fills the dispatcher from the level streams, by the fetch script only."""

    def __init__(self, keys: QueueKeys, settings: StreamflowSettings, dispatcher: Dispatcher,
                 *, group: str, consumer: str, stopping: anyio.Event,
                 survive: Callable[[str, Exception, float], Awaitable[None]]) -> None:
        self.keys = keys
        self.client: Any = None
        self.state = FetchState.STARTING
        self.rounds = 0
        """Fetch-script calls so far."""
        self.limited_until = 0.0
        """Wall-clock time before which this worker does not fetch (a ``RateLimited``)."""
        self._settings = settings
        self._dispatcher = dispatcher
        self._group = group
        self._consumer = consumer
        self._stopping = stopping
        self._survive = survive
        self._scope: anyio.CancelScope | None = None
        self._fetch_keys = [keys.meta, keys.limiter, *keys.streams]
        self._waiter: PipelinedWait | None = None
        self._plain_wait = False
        """Whether the next wait is a plain XREAD (after a pipelined one lost its connection)."""
        self._lost = False
        """Whether this worker's last wake was for an entry another worker took (the herd):
        it then waits the plain way, like old, until one of its fetches claims something."""
        self._woken_by_entry = False
        self.acks: Acker | None = None
        """The worker's acker: an idle wait writes what it buffered ahead of itself."""

    def stop(self) -> None:
        """Called once the worker stops: a plain wait in XREAD (which claims nothing) or a
        failing call is cancelled at once; a fetch-script call in flight is let finish, and
        so is a pipelined wait, woken through its wake stream so that what its fetch claimed
        is read and dispatched, never left pending for the reclaimer."""
        if self._waiter is not None:
            self._waiter.wake()
            if self._waiter.waiting:
                return
        if self._scope is not None and self.state in (FetchState.WAITING, FetchState.FAILING,
                                                      FetchState.PAUSED, FetchState.LIMITED,
                                                      FetchState.FULL):
            self._scope.cancel()

    async def loop(self) -> None:
        """Fetch until the worker stops; ``dispatcher.finish()`` at the end."""
        if not PipelinedWait.usable(self.client):
            await self._loop()
            return
        waiter = self._waiter = PipelinedWait(self.client, self.keys, self._fetch_keys,
                                              group=self._group, consumer=self._consumer,
                                              acks=self.acks)
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.watch)
            try:
                await self._loop()
            finally:
                waiter.wake()
        await waiter.release()
        await waiter.forget()

    async def _loop(self) -> None:
        ws = self._settings.worker
        dispatcher = self._dispatcher
        failures = 0
        last_ids: list[Any] | None = None
        try:
            while not self._stopping.is_set():
                with anyio.CancelScope() as self._scope:
                    if self._stopping.is_set():
                        break
                    try:
                        free = dispatcher.free
                        sent_ms = int(time.time() * 1000)
                        if last_ids is not None and self.limited_until > time.time():
                            last_ids = None  # limited by a handler: no wait, whose fetch
                            # could claim before the limit reaches the meta hash; sleep below
                        if last_ids is not None:
                            waited, last_ids = last_ids, None
                            self.state = FetchState.WAITING
                            count = self._wait_count(free)
                            if (self._waiter is None or self._plain_wait or self._lost
                                    or count <= 0):
                                self._plain_wait = False
                                self._woken_by_entry = bool(
                                    await self._wait_for_entries(waited, ws.block_ms))
                                continue
                            reply = await self._wait_then_fetch(waited, count, sent_ms)
                            if reply is None:
                                continue
                        else:
                            if free <= 0:
                                self.state = FetchState.FULL
                                await dispatcher.wait_for_capacity(1.0)
                                continue
                            limited = self.limited_until - time.time()
                            if limited > 0:
                                self.state = FetchState.LIMITED
                                await anyio.sleep(min(limited, PAUSE_CHECK_S))
                                continue
                            self.state = FetchState.FETCHING
                            dispatcher.fetching = min(free, ws.batch_size)
                            try:
                                reply = await self._fetch(dispatcher.fetching, sent_ms)
                            finally:
                                dispatcher.fetching = 0
                        failures = 0
                        if isinstance(reply, int):  # 0: paused; -W: rate limited for W ms
                            # -W is counted from the `now` sent, which a pipelined call sent
                            # before its wait: a limit over by now is not waited for again
                            wait = (sent_ms - reply) / 1000 - time.time() if reply < 0 \
                                else ws.block_ms / 1000
                            if wait > 0:
                                self.state = (FetchState.PAUSED if reply == 0
                                              else FetchState.LIMITED)
                                await anyio.sleep(min(wait, PAUSE_CHECK_S))
                            continue
                        last_ids = self._dispatch(reply)
                        claimed = bool(reply) and reply[0] != NOTHING_WAITS
                        if claimed or self._woken_by_entry:
                            self._lost = not claimed
                        self._woken_by_entry = False
                        if last_ids is None or claimed:
                            # let runners start these before the next fetch or wait is sent
                            await anyio.lowlevel.checkpoint()
                    except PASSING as exc:
                        if isinstance(exc, NoPermissionError):
                            raise  # a worker without the rights it needs must stop, loudly
                        if not passes(exc):
                            raise
                        self.state = FetchState.FAILING
                        last_ids = None
                        failures += 1
                        await self._survive("fetch", exc, min(0.1 * 2**failures, 5.0))
        finally:
            self.state = FetchState.STOPPED
            dispatcher.finish()

    async def _wait_then_fetch(self, last_ids: list[Any], count: int, sent_ms: int) -> Any:
        """The pipelined wait (``wake.py``): the fetch reply, or a plain fetch's reply when
        the pipelined call met an error reply; None when it sent nothing; a lost connection
        makes the next wait a plain one (and the next fetch the usual call)."""
        assert self._waiter is not None
        self._dispatcher.fetching = count  # partitions sharing capacity count it as taken
        try:
            try:
                reply = await self._waiter.wait_then_fetch(last_ids, count, sent_ms,
                                                           self._settings.worker.block_ms)
            except MAYBE_LOST as exc:
                if not lost_connection(exc):
                    raise
                log.debug("pipelined wait: %s: %s; waiting the plain way next",
                          type(exc).__name__, exc)
                self._plain_wait = True
                return None
            if reply is None:
                return None
            self._woken_by_entry = self._waiter.woken_by_entry
            self.state = FetchState.FETCHING
            self.rounds += 1
            if reply is FAILED:  # NOSCRIPT, functions missing...: the usual call reloads them
                reply = await self._fetch(count, int(time.time() * 1000))
            return reply
        finally:
            self._dispatcher.fetching = 0

    def _wait_count(self, free: int) -> int:
        """How many entries the fetch sent with a wait asks for; 0: wait the plain way.

        Alone, the free capacity: it can only grow while the worker waits. A partition
        sharing its worker's concurrency holds what it asks for while it waits (the other
        partitions may not take it meanwhile), so it asks for one entry (and fetches the
        rest the usual way), and only while the capacity not held by running jobs is at
        least twice the number of partitions (their holds take at most half of it); else it
        waits the plain way and holds nothing."""
        shared = self._dispatcher.shared
        if shared is None:
            return min(free, self._settings.worker.batch_size)
        held = sum(len(d.held) for d in shared.dispatchers)
        return 1 if free > 0 and shared.concurrency - held >= 2 * len(shared.dispatchers) \
            else 0

    @property
    def pipelined(self) -> bool:
        """Whether the worker is in a pipelined wait (its next fetch queued behind it)."""
        return self._waiter is not None and self._waiter.waiting

    @property
    def working(self) -> bool:
        """Whether the last call to Redis succeeded (for readiness probes)."""
        return self.state not in (FetchState.STARTING, FetchState.FAILING, FetchState.STOPPED)

    async def _fetch(self, count: int, now_ms: int) -> Any:
        self.rounds += 1
        return await scripts.call(self.client, scripts.FETCH_JOBS, self._fetch_keys,
                                  [self._group, self._consumer, count, now_ms])

    def _dispatch(self, reply: list[Any]) -> list[Any] | None:
        """Hand the claimed entries on; the last ids to wait after when all was drained."""
        dispatch = self._dispatcher.dispatch
        for i in range(0, len(reply), 2):
            level = reply[i]
            if level == NOTHING_WAITS:
                return reply[i + 1:]
            dispatch(int(level), reply[i + 1])
        return None

    async def _wait_for_entries(self, last_ids: list[Any], block_ms: int) -> Any:
        """Block until an entry newer than ``last_ids`` arrives on any level (or ``block_ms``
        passes); the XREAD reply (empty after ``block_ms``). Claims nothing."""
        return await self.client.xread(dict(zip(self.keys.streams, last_ids, strict=True)),
                                       count=1, block=block_ms)
