"""Dashboard: the shared state of one app (config, Redis client, queues, discovery)."""

from __future__ import annotations

from typing import Any

from ..connection import create_client
from ..queue import Queue
from .config import DashboardConfig
from .discovery import QueueDirectory


class UnknownQueue(LookupError):
    """Raised when a page names a queue the dashboard does not show."""


class Dashboard:
    """Holds one Redis client for every request and one ``Queue`` handle per queue name."""

    def __init__(self, config: DashboardConfig, *, client: Any = None) -> None:
        self.config = config
        self.settings = config.settings
        self.directory = QueueDirectory(config.settings.prefix, fixed=config.queues,
                                        ttl=config.discovery_ttl)
        self._client = client
        self._own_client = client is None
        self._queues: dict[str, Queue] = {}

    @property
    def client(self) -> Any:
        """The Redis client (created on first use, inside the server's event loop)."""
        if self._client is None:
            redis = self.settings.redis.model_copy()
            # a page answers within seconds, also when Redis is gone: no minute of retries
            redis.retry_attempts = min(redis.retry_attempts, 2)
            redis.connect_timeout = min(redis.connect_timeout, 3.0)
            self._client = create_client(redis, max_connections=32,
                                         client_name="streamflow-dashboard")
        return self._client

    def handle(self, name: str) -> Queue:
        """A ``Queue`` sharing the dashboard's client (not checked against discovery)."""
        queue = self._queues.get(name)
        if queue is None:
            queue = Queue(name, settings=self.settings, client=self.client)
            self._queues[name] = queue
        return queue

    async def opened(self, name: str) -> Queue:
        """``handle(name)`` with its partition count read from Redis (a partitioned queue is
        shown whole: totals over its partitions)."""
        queue = self.handle(name)
        await queue.discover()
        return queue

    async def names(self) -> list[str]:
        """The queues shown (fixed list, or discovered under the prefix, cached)."""
        return await self.directory.names(self.client)

    async def queue(self, name: str) -> Queue:
        """The ``Queue`` of a shown queue; ``UnknownQueue`` otherwise."""
        if name not in await self.names():
            raise UnknownQueue(f"no queue {name!r} under prefix {self.settings.prefix!r}")
        return await self.opened(name)

    async def aclose(self) -> None:
        """Close the Redis client if the dashboard created it."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
