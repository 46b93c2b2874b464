"""Dispatch: fetched entries -> jobs on the ready queue -> ``concurrency`` runners.

Runners are long-lived tasks, not one task per job: a runner whose handler does not suspend
goes on with the next ready job itself, so a batch costs a couple of wake-ups, not one per job.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..codec import MalformedEntry, decode_job, pairs
from ..job import Job
from ..keys import QueueKeys
from ..outcomes import Outcomes

log = logging.getLogger("streamflow.worker")


class Dispatcher:
    """The jobs a worker holds: fetched and not yet finished (``held``), waiting for a runner
    (``ready``); ``capacity`` is set whenever a slot frees."""

    def __init__(self, keys: QueueKeys, concurrency: int, outcomes: Outcomes,
                 flush_wanted: Callable[[], None]) -> None:
        self.keys = keys
        self.concurrency = concurrency
        self.held: set[tuple[int, str]] = set()  # (level, entry id)
        self.ready: deque[Job] = deque()
        self.capacity = anyio.Event()
        self.progress: Any = None
        self.log: Any = None
        self.track_started: Callable[[Job], None] = lambda job: None
        self.shared: SharedCapacity | None = None
        self.fetching = 0
        """Entries asked for by a fetch in flight (partitions sharing capacity count them)."""
        """Set on the partitions of one worker: they share its concurrency."""
        self._outcomes = outcomes
        self._flush_wanted = flush_wanted
        self._idle: list[anyio.Event] = []
        self._in_transit = 0
        self._done = False
        self._level_of = {level: i for i, level in enumerate(keys.levels)}

    @property
    def free(self) -> int:
        """How many more entries this worker may take."""
        if self.shared is not None:
            return min(self.concurrency - len(self.held), self.shared.free)
        return self.concurrency - len(self.held)

    async def wait_for_capacity(self, timeout: float) -> None:
        """Return when a slot frees (or after ``timeout`` seconds)."""
        self.capacity = anyio.Event()
        if self.free > 0:
            return
        with anyio.move_on_after(timeout):
            await self.capacity.wait()

    def dispatch(self, level: int, entries: list[Any], *, first: bool = False) -> None:
        """Decode ``entries`` of ``level`` and queue them for the runners (at the front with
        ``first``: reclaimed entries of a dead worker go before new ones). ``entries`` is a
        list of ``(id, fields)`` (XCLAIM's answer) or the fetch script's flat list."""
        held = self.held
        jobs: list[Job] = []
        queue = self.keys.queue
        level_name = self.keys.levels[level]
        if entries and not isinstance(entries[0], list | tuple):
            entries = unflatten(entries)
        for entry_id, raw in entries:
            fields = raw if isinstance(raw, dict) else pairs(raw)
            try:
                job = decode_job(entry_id, fields, queue, level_name)
            except MalformedEntry as exc:
                entry = entry_id.decode()
                log.warning("malformed entry %s dead-lettered: %s", entry, exc)
                self._outcomes.dead_entry(level, entry, f"{level_name}:{entry}", "malformed",
                                          str(exc), "", fields)
                self._flush_wanted()
                continue
            job._progress = self.progress
            job._log = self.log
            held.add((level, job.entry_id))
            jobs.append(job)
            if job.options.track:
                self.track_started(job)
        if first:
            self.ready.extendleft(reversed(jobs))
        else:
            self.ready.extend(jobs)
        self._wake()

    def release(self, job: Job) -> None:
        """``job`` is finished: its slot is free."""
        self.held.discard((self._level_of[job.level], job.entry_id))
        self.capacity.set()
        if self.shared is not None:
            self.shared.released()

    def _wake(self) -> None:
        if self._in_transit == 0 and self._idle and self.ready:
            self._in_transit += 1
            self._idle.pop().set()

    async def runner(self, run: Callable[[Job], Awaitable[None]]) -> None:
        """Run ready jobs until ``finish()`` and the ready queue is empty."""
        ready = self.ready
        while True:
            if ready:
                job = ready.popleft()
                if ready:
                    self._wake()
                await run(job)
                continue
            if self._done:
                return
            event = anyio.Event()
            self._idle.append(event)
            await event.wait()
            self._in_transit -= 1

    def finish(self) -> None:
        """No more entries will come: runners return once the ready queue is empty."""
        self._done = True
        for event in self._idle:
            self._in_transit += 1
            event.set()
        self._idle.clear()

    @property
    def finished(self) -> bool:
        """Whether ``finish()`` was called."""
        return self._done


def unflatten(flat: list[Any]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The fetch script's entries of one level, ``[id, F, f1, v1, ..., id, F, ...]`` (F: how
    many field names and values follow the count), as ``(id, fields)`` pairs."""
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    i, end = 0, len(flat)
    while i < end:
        size = flat[i + 1]
        if size == 4:  # a plain envelope (name, data): the hot path
            out.append((flat[i], {flat[i + 2]: flat[i + 3], flat[i + 4]: flat[i + 5]}))
        else:
            values = flat[i + 2:i + 2 + size]
            out.append((flat[i], dict(zip(values[::2], values[1::2], strict=True))))
        i += 2 + size
    return out


class SharedCapacity:
    """One worker's concurrency shared by the dispatchers of the partitions it consumes.

    A fetch takes at most a fair share (concurrency / partitions, at least 1) and a freed slot
    wakes the partitions' fetchers in rotating order, so no partition starves while another
    has a backlog; a partition alone with work still fills every slot, a share per fetch.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.dispatchers: list[Dispatcher] = []
        self._share = concurrency
        self._turn = 0

    def join(self, dispatcher: Dispatcher) -> None:
        """Let ``dispatcher`` take from this capacity."""
        dispatcher.shared = self
        self.dispatchers.append(dispatcher)
        self._share = max(1, -(-self.concurrency // len(self.dispatchers)))

    @property
    def free(self) -> int:
        """Slots free across the partitions, capped at one partition's fair share."""
        held = sum(len(d.held) + d.fetching for d in self.dispatchers)
        return min(self.concurrency - held, self._share)

    def released(self) -> None:
        """A slot freed: every partition may fetch again, a different one first each time."""
        count = len(self.dispatchers)
        self._turn = (self._turn + 1) % count
        for i in range(count):
            self.dispatchers[(self._turn + i) % count].capacity.set()

