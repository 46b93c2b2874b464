"""The base of a Queue handle: settings, keys, client, lifecycle, consumer groups."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Self

from redis.exceptions import OutOfMemoryError, ResponseError

from .. import scripts
from ..connection import create_client
from ..enqueue import CHUNK, Enqueuer
from ..errors import QueueFull
from ..keys import QueueKeys
from ..settings import Durability, StreamflowSettings, resolve_settings

__all__ = ["CHUNK", "QueueBase", "ensure_groups"]


class QueueBase:
    """What every part of ``Queue`` shares."""

    def __init__(self, name: str, *, url: str | None = None,
                 settings: StreamflowSettings | None = None, client: Any = None,
                 durability: Durability | None = None) -> None:
        self.settings = resolve_settings(url, settings)
        self.name = name
        self.keys = QueueKeys(name, self.settings.prefix, tuple(self.settings.levels))
        self.durability: Durability = durability or self.settings.queue.durability
        self._own_client = client is None
        self._client = client
        self._emit_failures = scripts.flag(self.settings.queue.emit_failures)
        self._enqueuer_: Enqueuer | None = None

    @property
    def client(self) -> Any:
        """The Redis client (created on first use)."""
        if self._client is None:
            self._client = create_client(self.settings.redis, max_connections=256,
                                         client_name=f"streamflow-producer-{os.getpid()}")
        return self._client

    async def __aenter__(self) -> Self:
        await self.ensure_group()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client if this queue created it."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> None:
        """Raise ``redis.exceptions.ConnectionError`` when Redis does not answer."""
        await self.client.ping()

    async def ensure_group(self, group: str | None = None) -> None:
        """Create the consumer group at position 0 on every level stream (idempotent)."""
        await ensure_groups(self.client, self.keys, group or self.settings.worker.group)

    def level_index(self, priority: str | None) -> int:
        """The index of a priority level; ``UnknownPriority`` for a name not configured."""
        return self._enqueuer.level_index(priority)

    @property
    def _enqueuer(self) -> Enqueuer:
        """The add path of this queue (made again with a new client)."""
        enqueuer = self._enqueuer_
        if enqueuer is None or enqueuer.client is not self.client:
            enqueuer = self._enqueuer_ = Enqueuer(self.keys, self.settings, self.client,
                                                  self.settings.queue.emit_added)
        return enqueuer


async def ensure_groups(client: Any, keys: QueueKeys, group: str) -> None:
    """XGROUP CREATE ... 0 MKSTREAM on every level stream; an existing group is kept.

    A full Redis refuses XGROUP CREATE even for a group that exists: then only a group that is
    missing is an error (``QueueFull``), so workers and producers start against a full Redis.
    """
    pipe = client.pipeline(transaction=False)
    for stream in keys.streams:
        pipe.xgroup_create(stream, group, id="0", mkstream=True)
    results = await pipe.execute(raise_on_error=False)
    for stream, result in zip(keys.streams, results, strict=True):
        if isinstance(result, OutOfMemoryError):
            if not await _group_exists(client, stream, group):
                raise QueueFull(f"Redis is full (maxmemory reached): cannot create the "
                                f"consumer group {group!r} of {stream}") from result
        elif isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
            raise result


async def _group_exists(client: Any, stream: str, group: str) -> bool:
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return False
    names = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in groups}
    return group in names
