"""Group commit for single adds: calls made while a send is in flight share the next send.

A caller appends its item and, when fewer than ``max_in_flight`` sends are under way, sends at
once the items waiting (its own among them): one caller alone pays no delay. Callers that arrive
while every slot is busy wait; the moment a send ends, the oldest of them sends everything that
has gathered since, up to ``max_items`` items or ``max_bytes`` bytes (the first item always goes).
No timer: a batch is whatever arrived during the previous round trip.

Each caller gets its own answer: ``send`` returns one outcome per item (a value, or an exception
for that item alone); an exception raised by ``send`` itself reaches every caller of that batch.
A send with batchmates runs in a task of its own, shielded from the cancellation of the caller
that started it (an ``asyncio.timeout`` around one add must not abort its batchmates' adds):
asyncio, because the Redis client is asyncio's, and anyio's shield does not hold against
``Task.cancel``. A caller alone in its batch sends in its own task, as an uncoalesced call
would. A caller cancelled while still waiting is taken out of the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


@dataclass(slots=True, eq=False)
class _Waiter(Generic[T, R]):
    item: T
    size: int
    wake: asyncio.Future[None] | None = None
    taken: bool = False
    finished: bool = False
    result: R | None = None
    error: BaseException | None = None


class Coalescer(Generic[T, R]):
    """Batches concurrent ``submit`` calls into calls of ``send``.

    Usage::

        coalescer = Coalescer(send_many, max_items=1000, max_bytes=1 << 20)
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
        self._waiting: deque[_Waiter[T, R]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.sends = 0
        """How many sends were made (for tests and benchmarks)."""

    @property
    def waiting(self) -> int:
        """Items not yet taken into a send."""
        return len(self._waiting)

    async def submit(self, item: T, size: int = 0) -> R:
        """Send ``item`` with whatever else is waiting; its own outcome, or its exception."""
        waiter: _Waiter[T, R] = _Waiter(item, size)
        self._waiting.append(waiter)
        try:
            while not waiter.finished:
                if not waiter.taken and self._in_flight < self._max_in_flight:
                    await self._send_next(waiter)
                else:
                    waiter.wake = asyncio.get_running_loop().create_future()
                    await waiter.wake
        except BaseException:
            if not waiter.taken:  # once in a send, its outcome is dropped
                self._waiting.remove(waiter)
                if self._waiting and self._in_flight < self._max_in_flight:
                    _wake(self._waiting[0])  # it may have been woken to send next
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.result  # type: ignore[return-value]

    def _take(self) -> list[_Waiter[T, R]]:
        batch = [self._waiting.popleft()]
        size = batch[0].size
        while self._waiting and len(batch) < self._max_items:
            size += self._waiting[0].size
            if size > self._max_bytes:
                break
            batch.append(self._waiting.popleft())
        for waiter in batch:
            waiter.taken = True
        return batch

    async def _send_next(self, own: _Waiter[T, R]) -> None:
        batch = self._take()
        self._in_flight += 1
        self.sends += 1
        if len(batch) == 1 and batch[0] is own:  # no batchmate to shield: no task (one caller)
            await self._run(batch)
            return
        task = asyncio.ensure_future(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def _run(self, batch: list[_Waiter[T, R]]) -> None:
        try:
            try:
                outcomes = await self._send([w.item for w in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"send returned {len(outcomes)} outcomes for "
                                       f"{len(batch)} items")
            except BaseException as exc:
                outcomes = [exc] * len(batch)
                if not isinstance(exc, Exception):
                    raise
            finally:
                for waiter, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        waiter.error = outcome
                    else:
                        waiter.result = outcome
                    waiter.finished = True
                    _wake(waiter)
        finally:
            self._in_flight -= 1
            if self._waiting:  # the connection is free: the oldest waiter sends next
                _wake(self._waiting[0])


def _wake(waiter: _Waiter[T, R]) -> None:
    if waiter.wake is not None and not waiter.wake.done():
        waiter.wake.set_result(None)
