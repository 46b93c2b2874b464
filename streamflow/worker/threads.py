"""Plain-function handlers on daemon threads.

A call given up (its deadline, the shutdown grace) abandons its thread: a thread cannot be
killed, so it is counted, capped (the worker stops to be restarted at ``max_abandoned``) and,
being a daemon, never keeps the process alive after the worker stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..job import Job

log = logging.getLogger("streamflow.worker")

_Work = tuple[contextvars.Context, Callable[[Job], Any], Job, "asyncio.Future[Any]",
              asyncio.AbstractEventLoop]


class HandlerThreads:
    """Daemon threads for plain-function handlers, grown on demand (at most one per running
    call) and reused. ``on_abandoned(delta)`` follows the abandoned count; ``exhausted()`` is
    called when it reaches ``max_abandoned``."""

    def __init__(self, max_abandoned: int, *, on_abandoned: Callable[[int], None],
                 exhausted: Callable[[], None]) -> None:
        self.max_abandoned = max_abandoned
        self.abandoned = 0
        self._on_abandoned = on_abandoned
        self._exhausted = exhausted
        self._idle: list[queue.SimpleQueue[_Work | None]] = []
        self._closed = False

    async def run(self, handler: Callable[[Job], Any], job: Job) -> Any:
        """``handler(job)`` on a thread; cancelling the call abandons the thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        inbox = self._idle.pop() if self._idle else self._start()
        inbox.put((contextvars.copy_context(), handler, job, future, loop))
        try:
            return await future
        except asyncio.CancelledError:
            if future.cancelled():  # the thread still runs the handler
                self._abandon(job)
            raise

    def close(self) -> None:
        """Let idle threads end; busy ones end when their handler returns."""
        self._closed = True
        for inbox in self._idle:
            inbox.put(None)
        self._idle.clear()

    def _start(self) -> queue.SimpleQueue[_Work | None]:
        inbox: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, args=(inbox,), daemon=True,
                         name="streamflow-handler").start()
        return inbox

    def _serve(self, inbox: queue.SimpleQueue[_Work | None]) -> None:
        while (work := inbox.get()) is not None:
            context, handler, job, future, loop = work
            del work
            result: Any = None
            error: BaseException | None = None
            try:
                result = context.run(handler, job)
            except BaseException as exc:  # the worker decides what it means, SystemExit too
                error = exc
            try:
                loop.call_soon_threadsafe(self._finished, inbox, future, result, error)
            except RuntimeError:  # the loop is closed: the worker is gone
                return
            del context, handler, job, future, result, error

    def _finished(self, inbox: queue.SimpleQueue[_Work | None], future: asyncio.Future[Any],
                  result: Any, error: BaseException | None) -> None:
        if future.cancelled():
            self.abandoned -= 1
            self._on_abandoned(-1)
        elif error is not None:
            if isinstance(error, StopIteration):  # a future refuses it
                error = RuntimeError(f"the handler raised {error!r}")
            future.set_exception(error)
        else:
            future.set_result(result)
        if self._closed:
            inbox.put(None)
        else:
            self._idle.append(inbox)

    def _abandon(self, job: Job) -> None:
        self.abandoned += 1
        self._on_abandoned(1)
        log.warning("job %s (%s): its handler thread goes on past the deadline and is abandoned "
                    "(%d abandoned, limit %d)", job.id, job.name, self.abandoned,
                    self.max_abandoned)
        if self.abandoned == self.max_abandoned:
            log.error("%d handler threads ran past their deadline and still run: the worker "
                      "stops to be restarted (worker.max_abandoned_threads)", self.abandoned)
            self._exhausted()
