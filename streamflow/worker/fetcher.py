"""The fetcher: the one path by which a worker takes new entries.

Only the fetch script claims entries; it applies the pause flag, the rate limit, strict
priority and the worker's free capacity. When every level is drained it also answers the last
id of each level stream, and the idle worker waits with ``XREAD BLOCK`` from exactly those ids:
XREAD claims nothing, it only says that something arrived, and the worker then asks the fetch
script again. An entry added between the script's answer and the XREAD has a higher id, so it
wakes the XREAD at once; nothing is missed.

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
from redis.exceptions import NoPermissionError, ResponseError

from .. import scripts
from ..keys import QueueKeys
from ..protocol import NOTHING_WAITS
from ..settings import StreamflowSettings
from .acker import REDIS_ERRORS, lost_connection
from .dispatch import Dispatcher

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

    def stop(self) -> None:
        """Called once the worker stops: a wait in XREAD (which claims nothing) or a failing
        call is cancelled at once; a fetch-script call in flight is let finish."""
        if self._scope is not None and self.state in (FetchState.WAITING, FetchState.FAILING,
                                                      FetchState.PAUSED, FetchState.LIMITED,
                                                      FetchState.FULL):
            self._scope.cancel()

    async def loop(self) -> None:
        """Fetch until the worker stops; ``dispatcher.finish()`` at the end."""
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
                        if last_ids is not None:
                            self.state = FetchState.WAITING
                            await self._wait_for_entries(last_ids, ws.block_ms)
                            last_ids = None
                            continue
                        free = dispatcher.free
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
                            reply = await self._fetch(dispatcher.fetching)
                        finally:
                            dispatcher.fetching = 0
                        failures = 0
                        if isinstance(reply, int):  # 0: paused; -W: rate limited for W ms
                            self.state = FetchState.PAUSED if reply == 0 else FetchState.LIMITED
                            wait = -reply / 1000 if reply < 0 else ws.block_ms / 1000
                            await anyio.sleep(min(wait, PAUSE_CHECK_S))
                            continue
                        last_ids = self._dispatch(reply)
                        if last_ids is None:  # more may wait: let runners start these first
                            await anyio.lowlevel.checkpoint()
                    except (*REDIS_ERRORS, ResponseError, AttributeError, TypeError) as exc:
                        if isinstance(exc, NoPermissionError):
                            raise  # a worker without the rights it needs must stop, loudly
                        if not isinstance(exc, ResponseError) and not lost_connection(exc):
                            raise
                        self.state = FetchState.FAILING
                        last_ids = None
                        failures += 1
                        await self._survive("fetch", exc, min(0.1 * 2**failures, 5.0))
        finally:
            self.state = FetchState.STOPPED
            dispatcher.finish()

    @property
    def working(self) -> bool:
        """Whether the last call to Redis succeeded (for readiness probes)."""
        return self.state not in (FetchState.STARTING, FetchState.FAILING, FetchState.STOPPED)

    async def _fetch(self, count: int) -> Any:
        self.rounds += 1
        return await scripts.call(self.client, scripts.FETCH_JOBS, self._fetch_keys,
                                  [self._group, self._consumer, count, int(time.time() * 1000)])

    def _dispatch(self, reply: list[Any]) -> list[Any] | None:
        """Hand the claimed entries on; the last ids to wait after when all was drained."""
        dispatch = self._dispatcher.dispatch
        for i in range(0, len(reply), 2):
            level = reply[i]
            if level == NOTHING_WAITS:
                return reply[i + 1:]
            dispatch(int(level), reply[i + 1])
        return None

    async def _wait_for_entries(self, last_ids: list[Any], block_ms: int) -> None:
        """Block until an entry newer than ``last_ids`` arrives on any level (or ``block_ms``
        passes). Claims nothing."""
        await self.client.xread(dict(zip(self.keys.streams, last_ids, strict=True)), count=1,
                                block=block_ms)
