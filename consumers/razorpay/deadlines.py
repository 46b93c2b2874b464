"""Deadlines kept as numbers, checked by one timer: the ingress's per-request timeouts.

Arming and cancelling a timer costs uvloop about 1.6 µs, and a webhook needed three: the
connection's header deadline, the request's body deadline, then its enqueue deadline (each
moved or cancelled as the request goes on). A `Sweep` holds deadlines in a dict instead: setting
or clearing one is a dict write, and one timer, running every ``tick`` seconds while any
deadline is set, expires those past due. A deadline fires up to ``tick`` seconds late.

Usage::

    sweep = Sweep(tick=0.05)
    sweep.set(connection, 10.0, close_connection)  # close_connection(connection) when due
    sweep.clear(connection)                         # done in time
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger("consumers.razorpay")

MAX_TICK = 0.05
"""Lateness allowed to a deadline of several seconds (the defaults are 5 and 10 s)."""


def tick_for(*timeouts: float) -> float:
    """A tick small next to every one of ``timeouts``: a fifth of the shortest, at most
    `MAX_TICK`."""
    return min(MAX_TICK, *(seconds / 5 for seconds in timeouts))


class Sweep:
    """Deadlines of keys (requests, connections), expired by one periodic timer."""

    __slots__ = ("_due", "_loop", "_tick", "_timer")

    def __init__(self, tick: float) -> None:
        if tick <= 0:
            raise ValueError("the tick must be positive")
        self._tick = tick
        self._due: dict[Hashable, tuple[float, Callable[[Any], object]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def tick(self) -> float:
        """Seconds between two checks (the most a deadline fires late)."""
        return self._tick

    def set(self, key: Hashable, seconds: float, expire: Callable[[Any], object]) -> None:
        """Call ``expire(key)`` ``seconds`` from now unless `clear` or `set` comes first for
        ``key``. Runs on the event loop."""
        loop = asyncio.get_running_loop()
        if self._timer is None or loop is not self._loop:
            self._start(loop)
        self._due[key] = (loop.time() + seconds, expire)

    def clear(self, key: Hashable) -> None:
        """Forget the deadline of ``key`` (none: nothing)."""
        self._due.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._due

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:  # a new loop (tests run several): the old keys died with it
            if self._timer is not None:
                self._timer.cancel()
            self._loop, self._due = loop, {}
        self._timer = loop.call_later(self._tick, self._run)

    def _run(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        late = [key for key, (when, _) in self._due.items() if when <= now]
        for key in late:
            _, expire = self._due.pop(key)
            try:
                expire(key)
            except Exception:  # one failing callback must not keep the others from firing
                log.exception("a deadline callback failed")
        self._timer = self._loop.call_later(self._tick, self._run) if self._due else None


_SWEEPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, float], Sweep]] = (
    weakref.WeakKeyDictionary())


def sweep_of(loop: asyncio.AbstractEventLoop, purpose: str, tick: float) -> Sweep:
    """The `Sweep` of ``loop`` for ``purpose`` with this ``tick``, made on first use. A key
    has one deadline per sweep: deadlines of different purposes need sweeps of their own."""
    sweeps = _SWEEPS.get(loop)
    if sweeps is None:
        sweeps = _SWEEPS[loop] = {}
    sweep = sweeps.get((purpose, tick))
    if sweep is None:
        sweep = sweeps[purpose, tick] = Sweep(tick)
    return sweep
