"""QueueEvents: read a queue's capped ``events`` stream (added, completed, retrying, dead...)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import anyio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import create_client
from .keys import QueueKeys
from .settings import StreamflowSettings


class EventName(StrEnum):
    """Lifecycle events written to the events stream."""

    ADDED = "added"
    DELAYED = "delayed"
    WAITING = "waiting"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    RETRYING = "retrying"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"
    DEAD = "dead"
    STALLED = "stalled"
    RECLAIMED = "reclaimed"
    PAUSED = "paused"
    RESUMED = "resumed"


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
        self.settings = settings or (
            StreamflowSettings.from_url(url) if url else StreamflowSettings())
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
        if self.last_id == "$":
            latest = await self.client.xrevrange(self.keys.events, count=1)
            self.last_id = latest[0][0].decode() if latest else "0-0"
        return self

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
        """The next events after the last one seen (waits up to ``block_ms`` for one)."""
        reply = await self.client.xread({self.keys.events: self.last_id}, count=count,
                                        block=block_ms)
        events = [parse_event(entry_id, fields) for _, entries in reply or ()
                  for entry_id, fields in entries]
        if events:
            self.last_id = events[-1].id
        return events

    async def __aiter__(self) -> AsyncIterator[QueueEvent]:
        failures = 0
        while not self._closed:
            try:
                events = await self.read(block_ms=self.block_ms)
                failures = 0
            except (RedisConnectionError, RedisTimeoutError):
                failures += 1
                await anyio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            for event in events:
                yield event

    async def run(self) -> None:
        """Dispatch events to the callbacks registered with ``on`` until ``close()``."""
        async for event in self:
            for callback in (*self._callbacks.get(event.name, ()), *self._callbacks.get("*", ())):
                result = callback(event)
                if result is not None:
                    await result
