"""The idle worker's wait and its next fetch, sent in one write: no round trip after the wake.

An idle worker writes ``XREAD BLOCK`` on the level streams (from the last ids the fetch
script answered) and, in the same write, the fetch-script call. Redis queues the call behind
the blocked XREAD and runs it as soon as the XREAD returns (an entry arrived, or the block
timed out), in the same turn of its event loop: the woken worker reads the claimed entries
without asking again. XREAD itself claims nothing; only the fetch script claims, with pause,
the rate limit, strict priority and the free capacity applied when it runs. What the acker
buffered (the acks of the jobs just run) goes ahead of the XREAD in the same write: Redis
answers it at once, before the XREAD blocks, so at light load a job costs one write and one
read, not a second round for its ack (``Acker.lend``/``settle``).

Stopping must not cancel the read: the queued fetch may already have claimed entries whose
reply is on its way, and cancelling would leave them pending on this consumer until the
reclaimer takes them. The XREAD also watches this worker's wake stream (from ``0-0``: any
entry); ``wake()`` adds an entry, the XREAD returns, the fetch runs and its reply is read and
dispatched like any other. The wake stream exists only from a stop to the fetcher's end (it is
deleted then, and expires anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import anyio
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import scripts
from ..keys import QueueKeys
from ..transient import REDIS_ERRORS
from .acker import Acker

log = logging.getLogger("streamflow.worker")

FAILED = object()
"""``wait_then_fetch`` met an error reply from the fetch-script call."""

WAKE_TTL_MS = 60_000
"""The wake stream expires after this, should the worker die before deleting it."""


class PipelinedWait:
    """``XREAD BLOCK`` + the fetch-script call in one write, on a connection of its own.

    Created inside the fetcher's loop; ``watch`` runs beside the loop for its whole life."""

    def __init__(self, client: Any, keys: QueueKeys, fetch_keys: list[str], *, group: str,
                 consumer: str, acks: Acker | None = None) -> None:
        self.client = client
        self._acks = acks
        """The worker's acker: what it buffered goes ahead of the wait, in the same write."""
        self.wake_key = f"{keys.base}:wake:{consumer}"
        """This worker's wake stream (``sf:{queue}:wake:<consumer>``)."""
        self.waiting = False
        """Whether a pipelined wait is under way (from before its write to its last read)."""
        self._woken = False
        self.woken_by_entry = False
        """Whether the last wait ended because an entry arrived on a level stream."""
        self._wake_names = (self.wake_key, self.wake_key.encode())
        self._streams = keys.streams
        self._fetch_keys = fetch_keys
        self._group = group
        self._consumer = consumer
        self._stop_asked = False
        self._asked = anyio.Event()
        self._pool = client.connection_pool
        self._connection: Any = None

    async def release(self) -> None:
        """Give the wait's connection back to the pool (kept from one wait to the next: the
        pool's checks cost the idle worker as much as its own work per job)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await self._pool.release(connection)

    @staticmethod
    def usable(client: Any) -> bool:
        """Whether ``client`` hands out single connections (not a Cluster client)."""
        return hasattr(getattr(client, "connection_pool", None), "get_connection")

    def wake(self) -> None:
        """The worker stops: end a wait under way (its fetch reply is still read and
        returned), and let no new one start."""
        self._stop_asked = True
        self._asked.set()

    async def watch(self) -> None:
        """Once ``wake()`` is called, add an entry to the wake stream if a wait is under way
        (the XREAD watches it from ``0-0``: it returns whether the entry lands before or after
        it). Returns then; the caller calls ``wake()`` when the loop ends, in any case."""
        await self._asked.wait()
        if not self.waiting:
            return
        self._woken = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(2.0), \
                contextlib.suppress(*REDIS_ERRORS, ResponseError):
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.wake_key, {"stop": int(time.time() * 1000)}, maxlen=1)
            pipe.pexpire(self.wake_key, WAKE_TTL_MS)
            await pipe.execute()

    async def forget(self) -> None:
        """Delete the wake stream, if ``watch`` wrote it (call once ``watch`` returned)."""
        if self._woken:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0), \
                    contextlib.suppress(*REDIS_ERRORS, ResponseError):
                await self.client.delete(self.wake_key)

    async def wait_then_fetch(self, last_ids: list[Any], count: int, now_ms: int,
                              block_ms: int) -> Any:
        """The fetch script's reply (asked for ``count`` entries, with ``now_ms``) once an
        entry newer than ``last_ids`` arrived or ``block_ms`` passed; ``FAILED`` when the
        script call met an error reply (NOSCRIPT, functions missing...): the caller fetches
        the usual way; None when nothing was sent (stopping, or the first call on the client
        has not settled FCALL or EVALSHA). A lost connection raises."""
        command = scripts.FETCH_JOBS.command(self._fetch_keys,
                                             [self._group, self._consumer, count, now_ms])
        fetch = scripts.as_sent(self.client, command)
        if fetch is None or self._stop_asked:
            return None
        xread = ("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", *self._streams,
                 self.wake_key, *last_ids, "0-0")
        self.waiting = True
        try:
            connection = self._connection or await self._pool.get_connection()
            self._connection = connection
            try:
                acks = self._acks.lend() if self._acks is not None else None
                try:
                    await _send(connection, [*acks, xread, fetch] if acks else [xread, fetch])
                    if acks:  # answered at once: Redis runs them before the XREAD blocks
                        acked = await _replies(connection, len(acks))
                except BaseException:
                    if acks:
                        self._acks.settle(None)  # type: ignore[union-attr]
                    raise
                if acks:
                    self._acks.settle(acked)  # type: ignore[union-attr]
                # socket_timeout bounds the wait: block_ms stays below it (Worker checks)
                woke_on, reply = await _replies(connection, 2)
            except BaseException:
                await self.release()
                raise
            names = _stream_names(woke_on)
            self.woken_by_entry = any(name not in self._wake_names for name in names)
            if not self._stop_asked and any(name in self._wake_names for name in names):
                await self.client.delete(self.wake_key)  # left by a dead worker of this name
        finally:
            self.waiting = False  # until here: a stop must not cancel, the reply is in hand
        return FAILED if isinstance(reply, ResponseError) else reply


async def _send(connection: Any, commands: list[Any]) -> None:
    """Write ``commands`` in one write (streamflow's connections write without redis-py's task
    per write: ``DirectWrite``)."""
    await connection.send_packed_command(connection.pack_commands(commands))


async def _replies(connection: Any, count: int) -> list[Any]:
    """The next ``count`` replies, within the connection's ``socket_timeout`` in all (one
    deadline, not one per reply); error replies are returned, not raised."""
    try:
        async with asyncio.timeout(connection.socket_timeout):
            return [await _read(connection, math.inf) for _ in range(count)]
    except TimeoutError:
        await connection.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout reading from socket") from None


async def _read(connection: Any, timeout: float | None = None) -> Any:
    """One reply; an error reply is returned, not raised (the connection stays in step)."""
    try:
        return await connection.read_response(timeout=timeout)
    except ResponseError as exc:
        return exc


def _stream_names(xread_reply: Any) -> list[Any]:
    """The streams an XREAD reply (a map in RESP3, a list of pairs in RESP2) has entries of."""
    if isinstance(xread_reply, dict):
        return list(xread_reply)
    if isinstance(xread_reply, list):
        return [item[0] for item in xread_reply]
    return []
