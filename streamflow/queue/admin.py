"""Operating a queue: pause, rate limits, repeats, drain, obliterate, dead-letter actions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from .. import scripts
from ..backoff import Backoff
from ..codec import encode_data
from ..errors import QueueBusy
from ..job import JobOptions
from ..repeat import RepeatSpec, cancel_next_tick
from ..retention import live_workers
from ..settings import to_ms, to_seconds
from .base import CHUNK, QueueBase


class Admin(QueueBase):
    """What operators do to a queue."""

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
            key=key or f"{name}:" + ("_".join(cron.split()).replace("*", "x")  # no quoting
                                     if cron is not None else f"every-{every_ms}ms"),
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

    async def remove_repeat(self, key: str) -> bool:
        """Stop a repeatable job (its tick already waiting is removed too)."""
        await cancel_next_tick(self.client, self.keys, key)
        return bool(await self.client.hdel(self.keys.repeat, key))

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
                 keys.workers, keys.repeat, keys.repeat_last, keys.meta, keys.limiter,
                 keys.where, keys.control, keys.audit]
        deleted = int(await self.client.delete(*fixed))
        for pattern in (keys.dedup("*"), keys.status("*"), keys.reply("*"),
                        keys.index("*", "*"), keys.job_log("*"), keys.metrics_minute("*")):
            batch: list[Any] = []
            async for key in self.client.scan_iter(match=_glob_escape(pattern), count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(await self.client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self.client.delete(*batch))
        return deleted

    async def retry_dead(self, entry_ids: Sequence[str] | None = None) -> int:
        """Put dead-lettered jobs back on their level with fresh attempts; all when no ids.

        Returns how many were put back.
        """
        if entry_ids is None:
            entries = await self.client.xrange(self.keys.dead, count=100_000)
            entry_ids = [entry_id.decode() for entry_id, _ in entries]
        moved = 0
        levels = self.settings.levels
        keys = [self.keys.dead, self.keys.events, self.keys.where, *self.keys.streams]
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
