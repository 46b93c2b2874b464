"""Queue discovery: the queue names under a key prefix, found by SCAN and cached.

The SCAN walks the keyspace once per ``ttl`` at most, never per page refresh.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from ..discovery import known_queues

SCAN_LIMIT = 2_000_000
"""Most keys one discovery looks at (``--queue`` skips discovery on larger databases)."""


class QueueDirectory:
    """The queues under ``prefix``: a fixed list, or discovered by SCAN and cached ``ttl`` s."""

    def __init__(self, prefix: str, *, fixed: tuple[str, ...] | None = None,
                 ttl: float = 15.0) -> None:
        self.prefix = prefix
        self.fixed = fixed
        self.ttl = ttl
        self.scans = 0
        self._names: list[str] = []
        self._at = -float("inf")
        self._lock = anyio.Lock()

    async def names(self, client: Any) -> list[str]:
        """Sorted queue names (a cached list while younger than ``ttl``)."""
        if self.fixed is not None:
            return list(self.fixed)
        if time.monotonic() - self._at < self.ttl:
            return self._names
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._names = await self._scan(client)
                self._at = time.monotonic()
        return self._names

    def forget(self) -> None:
        """Scan again on the next call (after a queue was created or deleted here)."""
        self._at = -float("inf")

    async def _scan(self, client: Any) -> list[str]:
        self.scans += 1
        return await known_queues(client, self.prefix, limit=SCAN_LIMIT)
