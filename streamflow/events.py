"""QueueEvents: read a queue's capped ``events`` stream (added, completed, retrying, dead...).

A partitioned queue has one events stream per partition (``sf:{name#i}:events``).
`QueueEvents` reads them all, or one (``partition=i``), and keeps a position per stream:

* on one Redis, one ``XREAD`` over every stream (``BLOCK`` waits on all of them);
* on Redis Cluster the streams sit in other slots, often on other nodes, and one command cannot
  span slots: a non-blocking ``XREAD`` per partition sent as one pipeline (a round trip per
  node), then, when all were empty, one blocking ``XREAD`` per partition at once; the first
  that answers wins and the others are cancelled (their connections are closed and redialled).

Order: the events of one partition come in stream order, none skipped or repeated. Across
partitions they are merged by entry id: on one Redis one ``XREAD`` sees every stream at one
instant and a read hands out nothing a stream that filled its ``COUNT`` may still precede
(`merge_events`), so the millisecond of the ids never goes back (events of the same
millisecond in different partitions come in partition order, not necessarily the order they
were written). On Cluster the nodes' clocks differ and the reads are not one instant: best
effort, an event can come after a later one of another partition.

The position (`QueueEvents.last_id`) of a partitioned reader is a composite cursor, the last
id handed out per partition joined by commas (``"1712000000000-0,0-0,..."``); giving it back as
``since`` resumes every partition where it stopped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from redis.asyncio import RedisCluster
from redis.exceptions import ClusterError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import create_client
from .errors import ConfigurationError
from .keys import QueueKeys
from .protocol import EventName as EventName
from .queue.partitioned import stored_partitions
from .settings import StreamflowSettings, resolve_settings

log = logging.getLogger("streamflow.events")

_ID = re.compile(r"^\d+(-\d+)?$")
_LOST = (RedisConnectionError, RedisTimeoutError, ConnectionError, ClusterError)


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One event: its stream id (resume from it), name, fields (job id ``i``, name ``n``...)
    and the partition whose stream holds it (None on a queue of one partition)."""

    id: str
    name: str
    fields: dict[str, str]
    partition: int | None = None

    @property
    def job_id(self) -> str | None:
        """The job the event is about, if any."""
        return self.fields.get("i")


def parse_event(entry_id: bytes, fields: dict[bytes, bytes],
                partition: int | None = None) -> QueueEvent:
    """An events-stream entry as a ``QueueEvent``."""
    decoded = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
    return QueueEvent(entry_id.decode(), decoded.pop("e", "unknown"), decoded, partition)


def parse_cursor(text: str, streams: int) -> list[str]:
    """The position in each of ``streams`` streams given by ``text``: ``"$"`` (only new
    events), one entry id (the same in every stream: events after that time) or a composite
    cursor of exactly ``streams`` ids joined by commas. ValueError otherwise."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) == 1:
        parts = parts * streams
    elif len(parts) != streams:
        have = f"the queue has {streams} partitions" if streams > 1 else \
            "one stream is read (a queue of one partition, or one partition)"
        raise ValueError(f"cursor {text!r} has {len(parts)} positions; {have}")
    for part in parts:
        if part != "$" and not _ID.match(part):
            where = f" (in cursor {text!r})" if len(parts) > 1 else ""
            raise ValueError(f"{part!r} is not a stream entry id like 1700000000000-0, 0 or "
                             f"${where}")
    return parts


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as numbers, for ordering (``(0, 0)`` when it is not one)."""
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def merge_events(batches: Sequence[Sequence[QueueEvent]], count: int | None = None, *,
                 read: int | None = None) -> list[QueueEvent]:
    """The events of several streams in one list by entry id (then partition), at most
    ``count``. Each stream's events must be in stream order, and what is kept of each is a
    prefix, so a position per stream stays sound. ``read``: the COUNT each stream was read
    with; a stream that filled it may hold more events before the others' later ones, so
    nothing after the earliest last id of such a stream is kept."""
    merged = sorted((event for batch in batches for event in batch),
                    key=lambda e: (id_key(e.id), e.partition or 0))
    if read is not None:
        full = [id_key(batch[-1].id) for batch in batches if len(batch) >= read]
        if full:
            bound = min(full)
            merged = [event for event in merged if id_key(event.id) <= bound]
    return merged if count is None else merged[:count]


async def events_layout(client: Any, keys: QueueKeys, *, partition: int | None = None,
                        partitions: int | None = None, configured: int = 1
                        ) -> list[tuple[int | None, str]]:
    """``(partition, events stream)`` of every stream a reader of ``keys``' queue follows:
    the recorded partition count unless ``partitions`` is given (``configured``, the
    ``queue.partitions`` setting, when nothing is recorded yet); only ``partition`` when given.
    ConfigurationError for a partition the queue does not have."""
    count = partitions or await stored_partitions(client, keys)
    if count == 1 and configured > 1:
        count = configured
    if partition is not None:
        if not 0 <= partition < count:
            raise ConfigurationError(f"partition {partition} does not exist: queue "
                                     f"{keys.queue!r} has {count} (0-{count - 1})")
        if count > 1:
            return [(partition, keys.part(partition).events)]
    if count == 1:
        return [(None, keys.events)]
    return [(i, keys.part(i).events) for i in range(count)]


Callback = Callable[[QueueEvent], Awaitable[None] | None]


class QueueEvents:
    """Follow a queue's events, from ``since`` (an event id, a composite cursor of a
    partitioned queue, or ``"$"`` for only new ones); ``partition=i``: that partition's only.

    Usage::

        async with QueueEvents("payments", url=...) as events:
            async for event in events:           # resumes after a reconnect without gaps
                print(event.name, event.job_id, event.partition)
    """

    def __init__(self, queue: str, *, url: str | None = None,
                 settings: StreamflowSettings | None = None, client: Any = None,
                 since: str = "$", block_ms: int = 1000, partition: int | None = None,
                 partitions: int | None = None) -> None:
        self.settings = resolve_settings(url, settings)
        self.keys = QueueKeys(queue, self.settings.prefix, tuple(self.settings.levels))
        self.block_ms = block_ms
        self.partition = partition
        """The one partition followed (None: all of them)."""
        self._partitions = partitions
        self._since = since
        self._streams: list[tuple[int | None, str]] = []
        self._positions: list[str] = []
        self._client = client
        self._own_client = client is None
        self._callbacks: dict[str, list[Callback]] = {}
        self._closed = False

    @property
    def client(self) -> Any:
        """The Redis client (created on first use)."""
        if self._client is None:
            room = self._partitions or self.settings.queue.partitions
            self._client = create_client(self.settings.redis, max_connections=4 + room)
        return self._client

    @property
    def last_id(self) -> str:
        """The position: the id of the last event handed out, or on a partitioned queue the
        composite cursor of every partition's (pass it back as ``since`` to resume)."""
        return ",".join(self._positions) if self._positions else self._since

    @last_id.setter
    def last_id(self, value: str) -> None:
        self._since = value
        self._positions = []

    @property
    def streams(self) -> list[tuple[int | None, str]]:
        """``(partition, stream key)`` of each stream followed (after the first read)."""
        return list(self._streams)

    async def __aenter__(self) -> QueueEvents:
        await self._resolve_start()
        return self

    async def _resolve_start(self) -> None:
        if not self._streams:
            self._streams = await events_layout(
                self.client, self.keys, partition=self.partition, partitions=self._partitions,
                configured=self.settings.queue.partitions)
            if self._partitions is None and len(self._streams) > 1 and self._own_client:
                await self._resize_client(len(self._streams))
        if self._positions:
            return
        positions = parse_cursor(self._since, len(self._streams))
        # "$" is resolved to the latest id once: reading with "$" again after each batch
        # would skip whatever was written between two reads.
        if "$" in positions:
            pipe = self.client.pipeline(transaction=False)
            for _, stream in self._streams:
                pipe.xrevrange(stream, count=1)
            latest = await pipe.execute()
            positions = [(last[0][0].decode() if last else "0-0") if pos == "$" else pos
                         for pos, last in zip(positions, latest, strict=True)]
        self._positions = positions

    async def _resize_client(self, streams: int) -> None:
        # A Cluster reader blocks on every partition at once: a connection each.
        if isinstance(self._client, RedisCluster):
            await self._client.aclose()
            self._client = create_client(self.settings.redis, max_connections=4 + streams)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop iterating and close the client if this object created it."""
        self._closed = True
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def on(self, name: str, callback: Callback) -> None:
        """Call ``callback`` for every event called ``name`` (``"*"`` for all) in ``run()``."""
        self._callbacks.setdefault(name, []).append(callback)

    async def read(self, count: int = 100, block_ms: int | None = None) -> list[QueueEvent]:
        """The next events after the last ones seen, at most ``count`` (waits up to
        ``block_ms`` for one); the position moves past all of them."""
        events = await self._fetch(count, block_ms)
        for event in events:
            self._advance(event)
        return events

    def _advance(self, event: QueueEvent) -> None:
        index = 0 if len(self._streams) == 1 else self._index(event.partition)
        self._positions[index] = event.id

    def _index(self, partition: int | None) -> int:
        return next(i for i, (p, _) in enumerate(self._streams) if p == partition)

    async def _fetch(self, count: int, block_ms: int | None, *,
                     every: bool = False) -> list[QueueEvent]:
        """Up to ``count`` events of each stream, merged; the oldest ``count`` of them, or with
        ``every`` all that can go out in order (a follower: fewer reads for a backlog)."""
        keep = None if every else count
        await self._resolve_start()
        streams = self._streams
        if len(streams) == 1 or not isinstance(self.client, RedisCluster):
            reply = await self.client.xread(
                {stream: pos for (_, stream), pos in zip(streams, self._positions,
                                                         strict=True)},
                count=count, block=block_ms)
            return merge_events(self._parse(reply), keep, read=count)
        pipe = self.client.pipeline(transaction=False)
        for (_, stream), pos in zip(streams, self._positions, strict=True):
            pipe.xread({stream: pos}, count=count)
        batches = [self._parse(reply) for reply in await pipe.execute()]
        if not any(batches) and block_ms is not None:
            batches = await self._first_to_answer(count, block_ms)
        return merge_events([b for batch in batches for b in batch], keep, read=count)

    async def _first_to_answer(self, count: int, block_ms: int) -> list[list[list[QueueEvent]]]:
        """Block on every partition's stream at once; the first to answer with events wins."""
        found: list[list[list[QueueEvent]]] = []

        async def wait(stream: str, pos: str) -> None:
            reply = await self.client.xread({stream: pos}, count=count, block=block_ms)
            if reply:
                found.append(self._parse(reply))
                tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                for (_, stream), pos in zip(self._streams, self._positions, strict=True):
                    tg.start_soon(wait, stream, pos)
        except BaseExceptionGroup as group:
            error: BaseException = group
            while isinstance(error, BaseExceptionGroup):
                error = error.exceptions[0]
            raise error from None
        return found

    def _parse(self, reply: Any) -> list[list[QueueEvent]]:
        partition_of = {stream: partition for partition, stream in self._streams}
        out = []
        for stream, entries in reply or ():
            name = stream.decode() if isinstance(stream, bytes) else stream
            partition = partition_of[name]
            out.append([parse_event(entry_id, fields, partition)
                        for entry_id, fields in entries])
        return out

    async def __aiter__(self) -> AsyncIterator[QueueEvent]:
        """Events as they come, until ``close()``. The position moves one event at a time, as
        each is handed out: breaking out of the loop and iterating again loses nothing, and a
        lost connection is retried (with backoff) from the last event handed out."""
        failures = 0
        while not self._closed:
            try:
                events = await self._fetch(100, self.block_ms, every=True)
            except _LOST as exc:
                if self._closed:
                    return
                failures += 1
                delay = min(0.05 * 2**failures, 5.0)
                log.warning("events of %s: %s; reading again from %s in %.2fs",
                            self.keys.queue, exc, self.last_id, delay)
                await anyio.sleep(delay)
                await self._check_trimmed()
                continue
            if failures:
                failures = 0
            for event in events:
                self._advance(event)
                yield event

    async def _check_trimmed(self) -> None:
        """Warn when a capped stream was trimmed past the position (those events are gone)."""
        for (_, stream), pos in zip(self._streams, self._positions, strict=True):
            try:
                first = await self.client.xrange(stream, count=1)
            except _LOST:
                return
            if first and id_key(pos) != (0, 0) and id_key(first[0][0].decode()) > id_key(pos):
                log.warning("events of %s were trimmed past %s while disconnected: some were "
                            "lost (raise queue.events_maxlen)", stream, pos)

    async def run(self) -> None:
        """Dispatch events to the callbacks registered with ``on`` until ``close()``; a callback
        that raises is logged and the others still run."""
        async for event in self:
            for callback in (*self._callbacks.get(event.name, ()), *self._callbacks.get("*", ())):
                try:
                    result = callback(event)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("events of %s: callback %r failed on %s", self.keys.queue,
                                  callback, event.name)
