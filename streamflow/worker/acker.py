"""The acker: finished jobs' outcomes sent in one pipeline per round, every result checked.

A round takes everything the runners buffered since the last one (acks with their events and
results, retries, dead letters, status records). A connection error keeps the round for the
next try; a command Redis refused is logged with the job it was about and tried again a few
times (a read-only answer passes), then given up: its entry stays pending and is reclaimed,
and the log line says why. A command refused because Redis is full (the ack scripts are not:
see ``lua/includes/full_redis.lua``; a status record can be) is kept until memory frees.

An idle fetcher's wait may carry a round ahead of itself in its own write (``lend``, then
``settle`` with the replies): what that round could not settle (an error reply, a lost
connection) stays here for a round of the loop, not counted as a refusal.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import TaskStatus
from redis.exceptions import OutOfMemoryError

from .. import scripts
from ..outcomes import About, Outcomes
from ..transient import MAYBE_LOST, REDIS_ERRORS, lost_connection

log = logging.getLogger("streamflow.worker")


FINAL_FLUSH_S = 3.0
"""How long the final flush may try at shutdown."""
REFUSALS_KEPT = 3
"""How many times a command Redis refused is sent again before it is given up."""
FULL_RETRY_S = 0.5
"""How long commands refused by a full Redis wait before they are sent again."""

_AGAIN = object()
"""A lent command's reply that the usual round must handle: sent again, not a refusal."""

_BY_FUNCTION = {script.function: script for script in scripts.SCRIPTS.values()}


def _script_of(command: scripts.Command) -> scripts.Script | None:
    return _BY_FUNCTION.get(command[1]) if command[0] == "FCALL" else None


class Acker:
    """Sends what ``outcomes`` buffered; ``wanted()`` asks for a round."""

    def __init__(self, client: object, outcomes: Outcomes) -> None:
        self.client = client
        self.outcomes = outcomes
        self._wanted = anyio.Event()
        self._commands: list[scripts.Command] = []
        self._about: list[About] = []
        self._refused: list[int] = []  # per kept command: how many times Redis refused it
        self._lock = anyio.Lock()  # the loop's round and the final flush never overlap
        self._lent_all = False  # lend() took everything asked for since the last wanted()
        self.full = False
        """Whether Redis refused a command of the last round because it is full."""

    def wanted(self) -> None:
        """Ask for a round soon."""
        self._lent_all = False
        self._wanted.set()

    def _take(self) -> None:
        commands, about = self.outcomes.take()
        self._commands += commands
        self._about += about
        self._refused += [0] * len(commands)

    async def flush(self) -> None:
        """One round: send everything kept; raises a connection error (all is kept then)."""
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        self._take()
        commands = self._commands
        if not commands:
            return
        self._settle(await scripts.pipeline(self.client, commands))

    def lend(self) -> list[scripts.Command] | None:
        """Everything buffered, as it is to be sent on this client, for a caller that writes
        it ahead of its own commands (the idle fetcher's wait); None when there is nothing to
        send, a round is under way, commands of an earlier round are kept (the loop sends
        them, at its pace), or the client has not settled FCALL or EVALSHA. The caller must
        call ``settle`` with the replies, in the same task, whatever happens."""
        if self._lock.locked() or self._commands:
            return None
        self._lock.acquire_nowait()
        self._take()
        sent = [scripts.as_sent(self.client, command) for command in self._commands]
        if not sent or None in sent:  # nothing, or the round of the loop settles the mode
            self._lock.release()
            if sent:
                self.wanted()
            return None
        self._lent_all = True
        return sent  # type: ignore[return-value]

    def settle(self, results: list[Any] | None) -> None:
        """The replies to what ``lend`` returned (None: the connection was lost, all is kept
        for the next round). A command answered by an error is kept, not counted as a
        refusal, for a round of the loop: that round handles it as usual (NOSCRIPT, a full
        Redis, a refusal)."""
        try:
            if results is None:
                self.wanted()
                return
            again = [_AGAIN if isinstance(result, Exception) else result for result in results]
            self._settle(again)
            if self._commands:
                self.wanted()
        finally:
            self._lock.release()

    def _settle(self, results: list[Any]) -> None:
        """Check the replies to ``self._commands``; keep what is to be sent again."""
        commands = self._commands
        kept: list[int] = []
        full = False
        for i, result in enumerate(results):
            if result is _AGAIN:
                kept.append(i)
                self._refused[i] -= 1
                continue
            if isinstance(result, REDIS_ERRORS):
                raise result
            if isinstance(result, OutOfMemoryError):
                kept.append(i)
                self._refused[i] -= 1  # not a refusal that counts: kept until memory frees
                full = True
            elif isinstance(result, Exception):
                if self._refused[i] < REFUSALS_KEPT:
                    kept.append(i)
                self._report_refusal(commands[i], self._about[i], result, self._refused[i])
            elif isinstance(result, int):
                self._check(commands[i], self._about[i], result)
        self._commands = [commands[i] for i in kept]
        self._about = [self._about[i] for i in kept]
        self._refused = [self._refused[i] + 1 for i in kept]
        if full != self.full:
            self.full = full
            if full:
                log.warning("Redis is full (maxmemory): %d commands refused (status records, "
                            "a queue-wide rate limit) are kept and sent again every %.1fs; "
                            "acks go on", len(kept), FULL_RETRY_S)
            else:
                log.warning("Redis took the commands it had refused when full")

    @staticmethod
    def _report_refusal(command: scripts.Command, about: About, error: Exception,
                        refused: int) -> None:
        script = _script_of(command)
        what = script.name if script is not None else str(command[0])
        if refused < REFUSALS_KEPT:
            log.error("%s for job %s refused by Redis: %s; sending it again", what,
                      _ids(about), error)
        else:
            log.error("%s for job %s refused by Redis %d times: %s; given up, the entry stays "
                      "pending and will be reclaimed and run again", what, _ids(about),
                      refused + 1, error)

    @staticmethod
    def _check(command: scripts.Command, about: About, result: int) -> None:
        script = _script_of(command)
        if script is None:
            return
        if script is scripts.COMPLETE_JOBS:
            sent = len(about) if isinstance(about, list) else 1
            if result < sent:
                log.warning("%d of %d completed jobs were no longer pending (another worker "
                            "took them over and may run them again): %s", sent - result, sent,
                            _ids(about))
        elif script.coded and result < 0:
            log.warning("%s for job %s not recorded: %s", script.name, _ids(about),
                        "the entry was no longer pending (another worker took it over)"
                        if result == -2 else f"code {result}")

    async def loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Flush whenever asked; back off while Redis is unreachable."""
        failures = 0
        task_status.started()
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            if self._lent_all:  # the idle fetcher's wait sent it: nothing to do
                continue
            try:
                await self.flush()
                failures = 0
                if self._commands:  # refused ones, sent again with the next round
                    await anyio.sleep(FULL_RETRY_S if self.full else 0.05)
                    self.wanted()
            except MAYBE_LOST as exc:
                if not lost_connection(exc):
                    raise
                failures += 1
                delay = min(0.05 * 2**failures, 5.0)
                log.warning("ack flush failed (%s); %d commands kept, retrying in %.2fs",
                            exc, len(self._commands), delay)
                self.wanted()
                await anyio.sleep(delay)

    async def final_flush(self, budget_s: float = FINAL_FLUSH_S) -> int:
        """The last rounds at shutdown, within ``budget_s`` seconds (a Redis that is gone must
        not hold the shutdown for the client's retries); returns how many commands could not
        be sent."""
        with anyio.move_on_after(budget_s):
            for attempt in range(5):
                try:
                    await self.flush()
                    if not self._commands:
                        break
                except MAYBE_LOST as exc:
                    if not lost_connection(exc):
                        raise
                    log.warning("final ack flush failed (%s), attempt %d", exc, attempt + 1)
                await anyio.sleep(0.2 * 2**attempt)
        self._take()
        unsent = len(self._commands)
        if unsent:
            log.error("final ack flush: %d commands could not be sent (jobs %s); their entries "
                      "stay pending and will be reclaimed", unsent,
                      _ids([i for about in self._about for i in _as_list(about)]))
        return unsent


def _as_list(about: About) -> list[str]:
    return about if isinstance(about, list) else [about]


def _ids(about: About) -> str:
    ids = _as_list(about)
    shown = ", ".join(ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
