"""Group commit for single adds: calls made while a send is in flight share a later send.

A caller alone (nothing waiting, a send slot free, no flush due) sends at once, in its own
task: one caller pays no delay. Otherwise it waits, and a *flush* sends what has gathered.
A flush is a ``loop.call_soon`` callback, scheduled when a send ends (or when a caller finds a
slot free but others waiting; one already due when a send ends is scheduled again), so it
runs after every task woken in the same loop iteration: the callers a reply wakes add again
before the next send leaves, and form one batch. No timer.

Up to ``max_in_flight`` sends run at once (each on its own connection): Python prepares the
next batch while Redis runs the previous one. A batch takes at most ``max_items`` items and
``max_bytes`` bytes (the first item always goes), and at most
``ceil((items in flight + items waiting) / max_in_flight)`` items, so concurrent batches stay of
even size (a batch of 1 then one of 199 would leave Python idle while Redis runs the 199).

Each caller gets its own answer: ``send`` returns one outcome per item (a value, or an exception
for that item alone); an exception raised by ``send`` itself reaches every caller of that batch.
A batch sent by a flush runs in a task of its own, shielded from the cancellation of any of its
callers (an ``asyncio.timeout`` around one add must not abort its batchmates' adds): asyncio,
because the Redis client is asyncio's, and anyio's shield does not hold against
``Task.cancel``. A caller alone in its batch sends in its own task, as an uncoalesced call
would. A caller cancelled while still waiting is taken out of the queue; once its item is in a
send, the item is sent and its outcome dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

_done = asyncio.Future.done

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """Batches concurrent ``submit`` calls into calls of ``send``.

    Usage::

        coalescer = Coalescer(send_many, max_items=1000, max_bytes=1 << 20, max_in_flight=2)
        result = await coalescer.submit(item, size=len(payload))
    """

    def __init__(self, send: Send[T, R], *, max_items: int = 1000, max_bytes: int = 1 << 20,
                 max_in_flight: int = 1) -> None:
        if max_items < 1 or max_bytes < 1 or max_in_flight < 1:
            raise ValueError("max_items, max_bytes and max_in_flight must be >= 1")
        self._send = send
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._max_in_flight = max_in_flight
        # The waiting callers, oldest first: their items, sizes and futures (one list each:
        # no object per caller beyond its future).
        self._items: list[T] = []
        self._sizes: list[int] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._in_flight = 0
        self._in_flight_items = 0
        self._due: asyncio.Handle | None = None  # the flush scheduled, if any
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoch = 0  # a new one per event loop: sends of an older one count no more
        self._tasks: set[asyncio.Task[None]] = set()
        self.sends = 0
        """How many sends were made (for tests and benchmarks)."""

    @property
    def waiting(self) -> int:
        """Items not yet taken into a send (their callers not cancelled)."""
        return sum(not future.done() for future in self._futures)

    async def submit(self, item: T, size: int = 0) -> R:
        """Send ``item`` with whatever else is waiting; its own outcome, or its exception."""
        return await self.join(item, size)

    def join(self, item: T, size: int = 0) -> Awaitable[R]:
        """``submit`` without a coroutine of its own (one frame less on the hot path): the
        awaitable of ``item``'s outcome, to be awaited at once (the item is queued already)."""
        if not self._items and self._due is None and self._in_flight < self._max_in_flight:
            return self._send_alone(item)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._move_to(loop)
        future: asyncio.Future[Any] = loop.create_future()
        self._items.append(item)
        self._sizes.append(size)
        self._futures.append(future)
        if self._due is None and self._in_flight < self._max_in_flight:
            self._due = loop.call_soon(self._flush)
        return future

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget the state left on another event loop (a flush it never ran, sends it
        dropped): it would hold this loop's callers forever."""
        if self._loop is not None:
            self._items, self._sizes, self._futures = [], [], []
            self._in_flight = self._in_flight_items = 0
            if self._due is not None:
                self._due.cancel()
                self._due = None
            self._epoch += 1
        self._loop = loop

    def _drop_cancelled(self) -> None:
        """Take the callers cancelled while waiting out of the queue (their futures are done:
        cancelling the task awaiting a future cancels the future)."""
        keep = [at for at, future in enumerate(self._futures) if not future.done()]
        self._items = [self._items[at] for at in keep]
        self._sizes = [self._sizes[at] for at in keep]
        self._futures = [self._futures[at] for at in keep]

    async def _send_alone(self, item: T) -> R:
        self._in_flight += 1
        self._in_flight_items += 1
        self.sends += 1
        epoch = self._epoch
        try:
            outcome = await self._send([item])
            if len(outcome) != 1:
                raise RuntimeError(f"send returned {len(outcome)} outcomes for 1 item")
        finally:
            if epoch == self._epoch:
                self._in_flight -= 1
                self._in_flight_items -= 1
                if self._items and self._due is None:  # a slot is free for the waiting ones
                    self._schedule_flush()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a send closed outside its loop (garbage collected): no one waits
            return
        self._due = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._due = None
        while self._items and self._in_flight < self._max_in_flight:
            items, futures = self._take()
            if not items:
                return
            self._in_flight += 1
            self._in_flight_items += len(items)
            self.sends += 1
            task = asyncio.ensure_future(self._run(items, futures, self._epoch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> tuple[list[T], list[asyncio.Future[Any]]]:
        if any(map(_done, self._futures)):
            self._drop_cancelled()
            if not self._items:
                return [], []
        waiting = len(self._items)
        slots = self._max_in_flight
        count = min(waiting, self._max_items,
                    -(-(self._in_flight_items + waiting) // slots))  # ceil: even batches
        sizes = self._sizes
        if sum(sizes[:count]) > self._max_bytes:
            size = sizes[0]
            n = 1
            while n < count and size + sizes[n] <= self._max_bytes:
                size += sizes[n]
                n += 1
            count = n
        items, futures = self._items[:count], self._futures[:count]
        del self._items[:count], self._futures[:count], self._sizes[:count]
        return items, futures

    async def _run(self, items: list[T], futures: list[asyncio.Future[Any]], epoch: int
                   ) -> None:
        outcomes: Sequence[R | BaseException]
        try:
            try:
                outcomes = await self._send(items)
                if len(outcomes) != len(items):
                    raise RuntimeError(f"send returned {len(outcomes)} outcomes for "
                                       f"{len(items)} items")
            except BaseException as exc:
                outcomes = [exc] * len(items)
                if not isinstance(exc, Exception):
                    raise
            finally:
                if epoch == self._epoch:  # else sent on a loop given up: its callers are gone
                    _answer(futures, outcomes)
        finally:
            if epoch == self._epoch:  # else sent on a loop given up: nothing counts it here
                self._in_flight -= 1
                self._in_flight_items -= len(items)
                if self._due is not None:  # due before the callers just woken: after them
                    self._due.cancel()
                    self._due = None
                self._schedule_flush()  # once the callers just woken have added again


def _answer(futures: list[asyncio.Future[Any]], outcomes: Sequence[Any]) -> None:
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():  # its caller was cancelled: the outcome is dropped
            continue
        if not isinstance(outcome, BaseException):
            future.set_result(outcome)
        elif isinstance(outcome, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(outcome)
