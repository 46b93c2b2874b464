"""`SyncQueue`: add jobs from synchronous code (Django views, Flask, scripts, Celery tasks).

Usage::

    from streamflow.integrations.sync import SyncQueue

    payments = SyncQueue("payments", url="redis://127.0.0.1:6379/0")   # module level, once

    def webhook(request):                                               # any thread
        job_id = payments.add("payment.captured", payload, job_id=payload["id"])

The asyncio `Queue` runs on an event loop in one background thread per process, started on
first use, so every call from every thread shares one connection pool instead of connecting
per request (what ``async_to_sync(...)`` around a fresh `Queue` would do). A process forked
after first use (a pre-forking server) starts its own loop on its first call. Calls block the
calling thread until Redis answers and raise what `Queue` raises.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from ..inspect import JobInfo
from ..queue import JobSpec, Queue
from ..settings import StreamflowSettings

T = TypeVar("T")


class SyncQueue:
    """A blocking facade over `Queue` for synchronous code; thread-safe."""

    def __init__(self, name: str, *, url: str | None = None,
                 settings: StreamflowSettings | None = None) -> None:
        self.name = name
        self._url, self._settings = url, settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: Queue | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._started()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _started(self) -> tuple[asyncio.AbstractEventLoop, Queue]:
        with self._lock:
            if self._pid != os.getpid():
                # the loop thread of a parent process does not exist after a fork
                self._loop = self._queue = None
            if self._loop is None or self._queue is None:
                loop = asyncio.new_event_loop()
                # a daemon thread: an interpreter exiting without close() does not wait for it
                thread = threading.Thread(target=_serve, args=(loop,), daemon=True,
                                          name=f"streamflow-sync-{self.name}")
                thread.start()
                self._thread = thread
                queue = Queue(self.name, url=self._url, settings=self._settings)
                try:
                    asyncio.run_coroutine_threadsafe(queue.__aenter__(), loop).result()
                except BaseException:
                    _stop(loop, queue)
                    raise
                self._loop, self._queue, self._pid = loop, queue, os.getpid()
            return self._loop, self._queue

    def _call(self, func: Callable[[Queue], Awaitable[T]]) -> T:
        loop, queue = self._started()
        if threading.current_thread() is self._thread:
            raise RuntimeError("SyncQueue called from its own event loop: use an async Queue")

        async def run() -> T:
            return await func(queue)

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    def add(self, name: str, data: Any = None, **options: Any) -> str | None:
        """`Queue.add`: the job id, or None for a duplicate ``job_id``."""
        return self._call(lambda q: q.add(name, data, **options))

    def add_bulk(self, jobs: Iterable[JobSpec | tuple[str, Any]],
                 **options: Any) -> list[str | None]:
        """`Queue.add_bulk`: the ids in order, None for duplicates."""
        specs = list(jobs)
        return self._call(lambda q: q.add_bulk(specs, **options))

    def get_job(self, job_id: str) -> JobInfo | None:
        """`Queue.get_job`: the status of a tracked job."""
        return self._call(lambda q: q.get_job(job_id))

    def ping(self) -> None:
        """Raise ``redis.exceptions.ConnectionError`` when Redis does not answer."""
        self._call(lambda q: q.ping())

    def close(self) -> None:
        """Close the connections and stop the loop thread; the next call starts them again."""
        with self._lock:
            loop, queue, self._loop, self._queue = self._loop, self._queue, None, None
            if loop is not None and queue is not None and self._pid == os.getpid():
                _stop(loop, queue)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


def _stop(loop: asyncio.AbstractEventLoop, queue: Queue) -> None:
    try:
        asyncio.run_coroutine_threadsafe(queue.close(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
