"""QueueEvents: read a queue's capped ``events`` stream (added, completed, retrying, dead...)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import create_client
from .keys import QueueKeys
from .protocol import EventName as EventName
from .settings import StreamflowSettings, resolve_settings

log = logging.getLogger("streamflow.events")


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One event: its stream id (resume from it), name and fields (job id ``i``, name ``n``...)."""

    id: str
    name: str
    fields: dict[str, str]

    @property
    def job_id(self) -> str | None:
        """The job the event is about, if any."""
        return self.fields.get("i")


def parse_event(entry_id: bytes, fields: dict[bytes, bytes]) -> QueueEvent:
    """An events-stream entry as a ``QueueEvent``."""
    decoded = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
    return QueueEvent(entry_id.decode(), decoded.pop("e", "unknown"), decoded)


Callback = Callable[[QueueEvent], Awaitable[None] | None]


class QueueEvents:
    """Follow a queue's events, from ``since`` (an event id; ``"$"`` for only new ones).

    Usage::

        async with QueueEvents("payments", url=...) as events:
            async for event in events:           # resumes after a reconnect without gaps
                print(event.name, event.job_id)
    """

    def __init__(self, queue: str, *, url: str | None = None,
                 settings: StreamflowSettings | None = None, client: Any = None,
                 since: str = "$", block_ms: int = 1000) -> None:
        self.settings = resolve_settings(url, settings)
        self.keys = QueueKeys(queue, self.settings.prefix, tuple(self.settings.levels))
        self.last_id = since
        self.block_ms = block_ms
        self._client = client
        self._own_client = client is None
        self._callbacks: dict[str, list[Callback]] = {}
        self._closed = False

    @property
    def client(self) -> Any:
        """The Redis client (created on first use)."""
        if self._client is None:
            self._client = create_client(self.settings.redis, max_connections=4)
        return self._client

    async def __aenter__(self) -> QueueEvents:
        await self._resolve_start()
        return self

    async def _resolve_start(self) -> None:
        # "$" is resolved to the latest id once: reading with "$" again after each batch
        # would skip whatever was written between two reads.
        if self.last_id == "$":
            latest = await self.client.xrevrange(self.keys.events, count=1)
            self.last_id = latest[0][0].decode() if latest else "0-0"

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop iterating and close the client if this object created it."""
        self._closed = True
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def on(self, name: str, callback: Callback) -> None:
        """Call ``callback`` for every event called ``name`` (``"*"`` for all) in ``run()``."""
        self._callbacks.setdefault(name, []).append(callback)

    async def read(self, count: int = 100, block_ms: int | None = None) -> list[QueueEvent]:
        """The next events after the last one seen (waits up to ``block_ms`` for one); the
        position moves past all of them."""
        events = await self._fetch(count, block_ms)
        if events:
            self.last_id = events[-1].id
        return events

    async def _fetch(self, count: int, block_ms: int | None) -> list[QueueEvent]:
        await self._resolve_start()
        reply = await self.client.xread({self.keys.events: self.last_id}, count=count,
                                        block=block_ms)
        return [parse_event(entry_id, fields) for _, entries in reply or ()
                for entry_id, fields in entries]

    async def __aiter__(self) -> AsyncIterator[QueueEvent]:
        """Events as they come, until ``close()``. The position moves one event at a time, as
        each is handed out: breaking out of the loop and iterating again loses nothing, and a
        lost connection is retried (with backoff) from the last event handed out."""
        failures = 0
        while not self._closed:
            try:
                events = await self._fetch(100, self.block_ms)
            except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
                if self._closed:
                    return
                failures += 1
                delay = min(0.05 * 2**failures, 5.0)
                log.warning("events of %s: %s; reading again from %s in %.2fs",
                            self.keys.queue, exc, self.last_id, delay)
                await anyio.sleep(delay)
                await self._check_trimmed()
                continue
            if failures:
                failures = 0
            for event in events:
                self.last_id = event.id
                yield event

    async def _check_trimmed(self) -> None:
        """Warn when the capped stream was trimmed past the position (those events are gone)."""
        try:
            first = await self.client.xrange(self.keys.events, count=1)
        except (RedisConnectionError, RedisTimeoutError, ConnectionError):
            return
        if first and _id_tuple(self.last_id) != (0, 0) and \
                _id_tuple(first[0][0].decode()) > _id_tuple(self.last_id):
            log.warning("events of %s were trimmed past %s while disconnected: some were lost "
                        "(raise queue.events_maxlen)", self.keys.queue, self.last_id)

    async def run(self) -> None:
        """Dispatch events to the callbacks registered with ``on`` until ``close()``; a callback
        that raises is logged and the others still run."""
        async for event in self:
            for callback in (*self._callbacks.get(event.name, ()), *self._callbacks.get("*", ())):
                try:
                    result = callback(event)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("events of %s: callback %r failed on %s", self.keys.queue,
                                  callback, event.name)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0
