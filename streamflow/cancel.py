"""Cancellation of running jobs through Redis: ``Queue.cancel`` appends a request to the
queue's control stream (``sf:{q}:control``, capped); every worker reads it from where it last
read (XRANGE), every ``CANCEL_POLL`` seconds, and the one holding the entry cancels the task
running the handler. The job is then dead-lettered with reason ``cancelled``. Works across processes
and pods: the only channel is Redis.

A request that arrives between the fetch and the handler's start is remembered (the last
``RECENT`` requests), so the handler is cancelled as it starts. A sync handler running in a
thread cannot be interrupted: the job is dead-lettered at once, its thread runs to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
from anyio.abc import TaskStatus
from redis.exceptions import RedisError

from .errors import JobCancelled
from .keys import QueueKeys
from .transient import lost_connection

log = logging.getLogger("streamflow.worker")

Survive = Callable[[str, Exception, float], Awaitable[None]]

CANCEL_POLL = 0.5
RECENT = 1000
REASON = "cancelled"


class CancelWatcher:
    """The tasks running a worker's jobs, and the loop that reads cancel requests.

    A run is tracked by its (level, entry id) and its asyncio task, and cancelled with
    ``Task.cancel()``: an anyio ``CancelScope`` per job would cost about 8 µs of worker CPU
    per job (measured), this costs a dict entry. ``cancelled()`` tells a ``CancelledError``
    the watcher caused (it is then taken back with ``Task.uncancel()``) from a shutdown's.
    """

    def __init__(self, client: Any, keys: QueueKeys, *, interval: float = CANCEL_POLL) -> None:
        self.client = client
        self.keys = keys
        self.interval = interval
        self._tasks: dict[tuple[int, str], asyncio.Task[Any]] = {}
        self._asked: set[tuple[int, str]] = set()
        self._recent: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._asked_recently = False
        self._last = "0-0"

    def track(self, key: tuple[int, str]) -> None:
        """The current task runs the job at ``key`` (level index, entry id) until ``untrack``."""
        task = asyncio.current_task()
        if task is None:
            return
        self._tasks[key] = task
        if self._asked_recently and key in self._recent:
            self._cancel(key, task)

    def untrack(self, key: tuple[int, str]) -> None:
        """The run at ``key`` is over."""
        self._tasks.pop(key, None)

    def cancelled(self, key: tuple[int, str]) -> bool:
        """Whether the ``CancelledError`` the run at ``key`` met is an operator's cancel (and
        nothing else cancelled the task meanwhile, such as a worker shutdown)."""
        if key not in self._asked:
            return False
        self._asked.discard(key)
        task = self._tasks.get(key)
        return task is not None and task.uncancel() == 0

    def _cancel(self, key: tuple[int, str], task: asyncio.Task[Any]) -> None:
        if key not in self._asked:
            self._asked.add(key)
            task.cancel()

    @contextlib.contextmanager
    def running(self, level: int, entry_id: str) -> Iterator[None]:
        """Track a run; an operator's cancel surfaces as ``JobCancelled``."""
        key = (level, entry_id)
        self.track(key)
        try:
            yield
        except asyncio.CancelledError:
            if self.cancelled(key):
                raise JobCancelled(f"cancelled by an operator (entry {entry_id})") from None
            raise
        finally:
            self.untrack(key)

    async def start_position(self) -> None:
        """Read only requests made from now on (older ones are for runs already over)."""
        newest = await self.client.xrevrange(self.keys.control, count=1)
        if newest:
            entry = newest[0][0]
            self._last = entry.decode() if isinstance(entry, bytes) else str(entry)

    async def poll(self) -> int:
        """Read new requests once; cancel the runs they name. Returns how many were ours."""
        # XRANGE from the last id read, not XREAD: the same answer, and a worker's ACL user
        # already has XRANGE
        entries = await self.client.xrange(self.keys.control, min=f"({self._last}", count=500)
        hits = 0
        for entry_id, fields in entries:
            self._last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if fields.get(b"c") != b"cancel":
                continue
            try:
                key = (int(fields.get(b"l", b"")), fields.get(b"e", b"").decode())
            except ValueError:
                continue
            self._recent[key] = None
            self._asked_recently = True
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
            task = self._tasks.get(key)
            if task is not None:
                self._cancel(key, task)
                hits += 1
        return hits

    async def watch(self, *, survive: Survive | None = None,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll every ``interval`` seconds until cancelled (a worker's background loop); a
        Redis error goes to ``survive`` (log, wait) and the loop goes on."""
        try:
            await self.start_position()
        except (RedisError, OSError, AttributeError, TypeError) as exc:
            if survive is None or not _passes(exc):
                raise
            log.warning("cancel: %s: %s; reading cancel requests from the start",
                        type(exc).__name__, exc)
        task_status.started()
        while True:
            await anyio.sleep(self.interval)
            try:
                await self.poll()
            except (RedisError, OSError, AttributeError, TypeError) as exc:
                if survive is None or not _passes(exc):
                    raise
                await survive("cancel", exc, 1.0)


def _passes(exc: BaseException) -> bool:
    """A Redis or socket error, or redis-py's leaked AttributeError/TypeError of a torn-down
    connection (``transient.lost_connection``; seen while a Cluster master failed over)."""
    return isinstance(exc, RedisError | OSError) or lost_connection(exc)
