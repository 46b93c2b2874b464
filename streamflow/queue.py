"""Queue: the producer and admin handle of one queue."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from redis.exceptions import ResponseError

from . import scripts
from .backoff import Backoff
from .codec import delayed_record, encode_data, envelope_fields
from .connection import create_client
from .errors import DurabilityError, InvalidJob, QueueBusy, UnknownPriority
from .inspect import (
    DeadEntry,
    JobInfo,
    QueueCounts,
    RepeatInfo,
    read_counts,
    read_dead,
    read_job,
)
from .job import JobOptions
from .keys import QueueKeys
from .metrics import metrics_for
from .protocol import F_DATA, F_NAME, F_TRACEPARENT, F_TRACESTATE
from .repeat import RepeatSpec, cancel_next_tick
from .retention import live_workers
from .settings import Durability, StreamflowSettings, resolve_settings, to_ms, to_seconds
from .telemetry import publish_span

CHUNK = 1000


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of a bulk add; fields as the keyword arguments of ``Queue.add``."""

    name: str
    data: Any = None
    priority: str | None = None
    delay: timedelta | float | None = None
    job_id: str | None = None
    attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    track: bool = False
    keep_result: bool | None = None


class Queue:
    """The handle producers and admins use: add jobs, pause, inspect, dead letters.

    Usage::

        async with Queue("payments", url="redis://localhost:6379") as q:
            job_id = await q.add("payment.captured", {"id": "pay_1"}, priority="high",
                                 job_id="evt_1")     # None: evt_1 was already added
            await q.add_bulk([("refund.created", {"id": "rfnd_1"}), ...])
    """

    def __init__(self, name: str, *, url: str | None = None,
                 settings: StreamflowSettings | None = None, client: Any = None,
                 durability: Durability | None = None) -> None:
        self.settings = resolve_settings(url, settings)
        self.name = name
        self.keys = QueueKeys(name, self.settings.prefix, tuple(self.settings.levels))
        self.durability: Durability = durability or self.settings.queue.durability
        self._own_client = client is None
        self._client = client
        self._level_index = {level: i for i, level in enumerate(self.settings.levels)}
        self._default_level = self._level_index[self.settings.default_level]
        defaults = self.settings.queue
        self._emit_added = scripts.flag(defaults.emit_all)
        self._emit_failures = scripts.flag(defaults.emit_failures)
        self._dedup_ttl_ms = int(defaults.dedup_ttl * 1000)

    @property
    def client(self) -> Any:
        """The Redis client (created on first use)."""
        if self._client is None:
            self._client = create_client(self.settings.redis, max_connections=256,
                                         client_name=f"streamflow-producer-{os.getpid()}")
        return self._client

    async def __aenter__(self) -> Self:
        await self.ensure_group()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client if this queue created it."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> None:
        """Raise ``redis.exceptions.ConnectionError`` when Redis does not answer."""
        await self.client.ping()

    async def ensure_group(self, group: str | None = None) -> None:
        """Create the consumer group at position 0 on every level stream (idempotent)."""
        await ensure_groups(self.client, self.keys, group or self.settings.worker.group)

    def level_index(self, priority: str | None) -> int:
        """The index of a priority level; ``UnknownPriority`` for a name not configured."""
        if priority is None:
            return self._default_level
        try:
            return self._level_index[priority]
        except KeyError:
            raise UnknownPriority(
                f"unknown priority {priority!r}; levels are {', '.join(self.settings.levels)}"
            ) from None

    async def add(self, name: str, data: Any = None, *, priority: str | None = None,
                  delay: timedelta | float | None = None, job_id: str | None = None,
                  attempts: int | None = None, backoff: Backoff | None = None,
                  timeout: float | None = None, track: bool = False,
                  keep_result: bool | None = None,
                  durability: Durability | None = None) -> str | None:
        """Add one job in one round trip; returns its id, or None when ``job_id`` was already
        added within the dedup TTL (the duplicate is refused, nothing is written).

        Raises ``PayloadTooLarge``/``PayloadNotSerializable``/``UnknownPriority`` before
        writing anything, and ``DurabilityError`` when ``durability="replicated"`` and no
        replica confirmed in time (the job may still be on the master: add it again with the
        same ``job_id`` to be sure, the dedup mark keeps it single).
        """
        spec = JobSpec(name, data, priority, delay, job_id, attempts, backoff, timeout, track,
                       keep_result)
        level = priority or self.settings.default_level
        with publish_span(self.name, name, level) as (_, carrier):
            keys, args = self._add_command([spec], carrier)
            ids = await self._send_adds([scripts.ADD_JOBS.command(keys, args)], durability)
        metrics_for(self.name).added_specs([spec], ids, self.settings.default_level)
        return ids[0]

    async def add_bulk(self, jobs: Iterable[JobSpec | tuple[str, Any]], *,
                       durability: Durability | None = None) -> list[str | None]:
        """Add many jobs: one script call per chunk of 1,000, all chunks in one pipeline.

        Returns the ids in order, None for duplicates refused. Every payload is checked before
        anything is written.
        """
        specs = [job if isinstance(job, JobSpec) else JobSpec(job[0], job[1]) for job in jobs]
        if not specs:
            return []
        with publish_span(self.name, specs[0].name, specs[0].priority
                          or self.settings.default_level, len(specs)) as (_, carrier):
            commands = []
            for start in range(0, len(specs), CHUNK):
                keys, args = self._add_command(specs[start:start + CHUNK], carrier)
                commands.append(scripts.ADD_JOBS.command(keys, args))
            ids = await self._send_adds(commands, durability)
        metrics_for(self.name).added_specs(specs, ids, self.settings.default_level)
        return ids

    def _add_command(self, specs: Sequence[JobSpec],
                     carrier: dict[str, str]) -> tuple[list[str], list[Any]]:
        keys = self.keys
        now = int(time.time() * 1000)
        max_bytes = self.settings.queue.max_payload_bytes
        traceparent = carrier.get("traceparent")
        tracestate = carrier.get("tracestate")
        extra_keys: list[str] = []
        args: list[Any] = [now, len(keys.streams), self._emit_added,
                           self.settings.queue.events_maxlen, self._dedup_ttl_ms, *keys.levels]
        trace_fields: list[bytes | str] = []
        if traceparent:
            trace_fields += [F_TRACEPARENT, traceparent]
        if tracestate:
            trace_fields += [F_TRACESTATE, tracestate]
        plain_level = self._default_level
        for spec in specs:
            if (spec.priority is None and spec.delay is None and spec.job_id is None
                    and spec.attempts is None and spec.backoff is None and spec.timeout is None
                    and not spec.track and spec.keep_result is None and spec.name):
                # the common case of a bulk add, without the general path's bookkeeping
                fields = [F_NAME, spec.name, F_DATA, encode_data(spec.data, max_bytes),
                          *trace_fields]
                args += [plain_level, 0, 0, 0, "", "", spec.name, len(fields), *fields]
                continue
            level = self.level_index(spec.priority)
            data = encode_data(spec.data, max_bytes)
            options = JobOptions(spec.attempts, spec.backoff, spec.timeout,
                                 spec.track or spec.job_id is not None, spec.keep_result)
            due = now + to_ms(spec.delay) if spec.delay is not None and to_seconds(
                spec.delay) > 0 else 0
            job_id = spec.job_id
            if job_id is not None and not job_id:
                raise InvalidJob("job_id must be a non-empty string")
            if not spec.name:
                raise InvalidJob("a job needs a non-empty name")
            tracked = spec.track or job_id is not None
            if (due or tracked) and job_id is None:
                job_id = os.urandom(10).hex()
            fields = envelope_fields(
                spec.name, data, job_id=job_id, enqueued_ms=now if due else None,
                options=options, traceparent=traceparent, tracestate=tracestate)
            dedup_index = status_index = 0
            if spec.job_id is not None:
                extra_keys.append(keys.dedup(spec.job_id))
                dedup_index = len(extra_keys)
            if job_id is not None and options.track:
                extra_keys.append(keys.status(job_id))
                status_index = len(extra_keys)
            if due:
                args += [level, due, dedup_index, status_index, job_id,
                         delayed_record(level, fields), spec.name, 0]
            else:
                args += [level, 0, dedup_index, status_index, job_id or "", "", spec.name,
                         len(fields), *fields]
        return [keys.delayed, keys.jobs, keys.events, *keys.streams, *extra_keys], args

    async def _send_adds(self, commands: list[scripts.Command],
                         durability: Durability | None) -> list[str | None]:
        replicated = (durability or self.durability) == "replicated"
        if replicated:
            timeout_ms = int(self.settings.queue.replicated_timeout * 1000)
            commands = [*commands, ("WAIT", 1, timeout_ms)]
        results = await scripts.pipeline(self.client, commands)
        for result in results:
            if isinstance(result, Exception):
                raise result
        if replicated and results.pop() < 1:
            raise DurabilityError(
                "no replica confirmed the add within "
                f"{self.settings.queue.replicated_timeout:g}s; retry it with the same job_id")
        ids: list[str | None] = []
        for chunk in results:
            ids += [item.decode() if isinstance(item, bytes) else None for item in chunk]
        return ids

    async def pause(self) -> None:
        """Stop workers fetching new jobs (in-flight jobs finish; adds keep working)."""
        await self._set_paused(True)

    async def resume(self) -> None:
        """Let workers fetch again."""
        await self._set_paused(False)

    async def _set_paused(self, paused: bool) -> None:
        event = "paused" if paused else "resumed"
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.meta, "paused", "1" if paused else "0")
        if self.settings.queue.events != "none":
            pipe.xadd(self.keys.events, {"e": event}, maxlen=self.settings.queue.events_maxlen,
                      approximate=True)
        await pipe.execute()

    async def set_rate_limit(self, max_jobs: int, per: timedelta | float, *,
                             margin: timedelta | float = 0.025) -> None:
        """Let all workers of the queue together start at most ``max_jobs`` per ``per`` seconds.

        ``margin`` widens the window a little, so that handler start times (a few ms after the
        grant) also stay within the limit.
        """
        if max_jobs < 1 or to_seconds(per) <= 0:
            raise ValueError("a rate limit needs max_jobs >= 1 and a positive duration")
        await self.client.hset(self.keys.meta, mapping={
            "rl_max": max_jobs, "rl_ms": to_ms(per), "rl_margin_ms": to_ms(margin)})

    async def clear_rate_limit(self) -> None:
        """Remove the queue's rate limit."""
        await self.client.hdel(self.keys.meta, "rl_max", "rl_ms", "rl_margin_ms")

    async def rate_limit(self, delay: timedelta | float) -> None:
        """Stop every worker fetching for ``delay`` (a provider asked us to back off)."""
        until = int(time.time() * 1000) + to_ms(delay)
        await self.client.hset(self.keys.meta, "limited_until", until)

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(await self.client.hget(self.keys.meta, "paused") == b"1")

    async def counts(self, group: str | None = None) -> QueueCounts:
        """Waiting per level, pending, delayed, dead and consumers of ``group``."""
        return await read_counts(self.client, self.keys, group or self.settings.worker.group)

    async def repeat(self, name: str, data: Any = None, *, cron: str | None = None,
                     every: timedelta | float | None = None, tz: str = "UTC",
                     key: str | None = None, start: datetime | None = None,
                     end: datetime | None = None, limit: int | None = None,
                     priority: str | None = None, attempts: int | None = None,
                     backoff: Backoff | None = None, timeout: float | None = None) -> str:
        """Add or replace a repeatable job; returns its key (default: name + schedule).

        ``cron`` is a cron expression evaluated in ``tz``; ``every`` a fixed interval. Ticks
        are jobs with the id ``repeat:<key>:<fire ms>``, one per tick whatever the number of
        workers. See ``streamflow.repeat`` for missed ticks and daylight saving time.
        """
        self.level_index(priority)
        every_ms = to_ms(every) if every is not None else None
        spec = RepeatSpec(
            key=key or f"{name}:{cron if cron is not None else f'every-{every_ms}ms'}",
            name=name, data=data, cron=cron, tz=tz, every_ms=every_ms,
            start_ms=int(start.timestamp() * 1000) if start else None,
            end_ms=int(end.timestamp() * 1000) if end else None, limit=limit,
            priority=priority,
            options=JobOptions(attempts, backoff, timeout).to_wire() or {})
        encode_data(data, self.settings.queue.max_payload_bytes)
        previous = await self.client.hget(self.keys.repeat, spec.key)
        if previous is not None and previous != spec.to_json():
            await cancel_next_tick(self.client, self.keys, spec.key)
        await self.client.hset(self.keys.repeat, spec.key, spec.to_json())
        return spec.key

    async def repeats(self) -> list[RepeatInfo]:
        """Every repeatable job with its next scheduled tick."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.repeat)
        pipe.hgetall(self.keys.repeat_last)
        specs, states = await pipe.execute()
        out: list[RepeatInfo] = []
        for raw_key, raw in sorted(specs.items()):
            spec = RepeatSpec.from_json(raw)
            state = states.get(raw_key, b"").decode()
            last, _, count = state.partition(":")
            out.append(RepeatInfo(
                key=spec.key, name=spec.name, cron=spec.cron, tz=spec.tz,
                every_ms=spec.every_ms, limit=spec.limit, end_ms=spec.end_ms,
                last_tick_ms=int(last) if last else None, ticks=int(count or 0)))
        return out

    async def remove_repeat(self, key: str) -> bool:
        """Stop a repeatable job (its tick already waiting is removed too)."""
        await cancel_next_tick(self.client, self.keys, key)
        return bool(await self.client.hdel(self.keys.repeat, key))

    async def get_job(self, job_id: str) -> JobInfo | None:
        """State, attempt, progress, result or error and timestamps of a job added with a
        caller-given id or ``track=True``; None when unknown or expired (after the dedup TTL)."""
        return await read_job(self.client, self.keys, job_id)

    async def drain(self, group: str | None = None) -> int:
        """Remove waiting and delayed jobs; jobs in flight finish. Returns how many went.

        The group skips past the unread entries (the janitor then trims them).
        """
        return int(await scripts.call(
            self.client, scripts.DRAIN_QUEUE,
            [self.keys.delayed, self.keys.jobs, *self.keys.streams],
            [group or self.settings.worker.group]))

    async def obliterate(self, *, force: bool = False) -> int:
        """Delete every key of the queue (jobs, dead letters, events, status, settings).

        Refused with ``QueueBusy`` while a worker's heartbeat is fresh, unless ``force``.
        Returns how many keys were deleted.
        """
        stale_ms = int(self.settings.worker.heartbeat_interval * 3 * 1000)
        if not force and await live_workers(self.client, self.keys, stale_after_ms=stale_ms):
            raise QueueBusy(f"queue {self.name!r} has active workers; stop them or pass "
                            "force=True")
        keys = self.keys
        fixed = [*keys.streams, keys.delayed, keys.jobs, keys.dead, keys.events, keys.done,
                 keys.workers, keys.repeat, keys.repeat_last, keys.meta, keys.limiter]
        deleted = int(await self.client.delete(*fixed))
        for pattern in (keys.dedup("*"), keys.status("*")):
            batch: list[Any] = []
            async for key in self.client.scan_iter(match=_glob_escape(pattern), count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(await self.client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self.client.delete(*batch))
        return deleted

    async def dead(self, count: int = 100, start: str = "-") -> list[DeadEntry]:
        """Dead-lettered jobs, oldest first."""
        return await read_dead(self.client, self.keys, count, start)

    async def retry_dead(self, entry_ids: Sequence[str] | None = None) -> int:
        """Put dead-lettered jobs back on their level with fresh attempts; all when no ids.

        Returns how many were put back.
        """
        if entry_ids is None:
            entries = await self.client.xrange(self.keys.dead, count=100_000)
            entry_ids = [entry_id.decode() for entry_id, _ in entries]
        moved = 0
        levels = self.settings.levels
        keys = [self.keys.dead, self.keys.events, *self.keys.streams]
        for start in range(0, len(entry_ids), CHUNK):
            args = [self._emit_failures, self.settings.queue.events_maxlen, len(levels),
                    *levels, *entry_ids[start:start + CHUNK]]
            moved += int(await scripts.call(self.client, scripts.RETRY_DEAD, keys, args))
        return moved

    async def purge_dead(self, entry_ids: Sequence[str] | None = None) -> int:
        """Delete dead-lettered jobs for good; all when no ids. Returns how many."""
        if entry_ids is None:
            count = int(await self.client.xlen(self.keys.dead))
            await self.client.delete(self.keys.dead)
            return count
        return int(await self.client.xdel(self.keys.dead, *entry_ids)) if entry_ids else 0


def _glob_escape(pattern: str) -> str:
    """A key pattern with the hash-tag braces and brackets taken literally; ``*`` stays a glob."""
    return "".join(f"\\{ch}" if ch in "[]?{}" else ch for ch in pattern)


async def ensure_groups(client: Any, keys: QueueKeys, group: str) -> None:
    """XGROUP CREATE ... 0 MKSTREAM on every level stream; an existing group is kept."""
    pipe = client.pipeline(transaction=False)
    for stream in keys.streams:
        pipe.xgroup_create(stream, group, id="0", mkstream=True)
    for result in await pipe.execute(raise_on_error=False):
        if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
            raise result
