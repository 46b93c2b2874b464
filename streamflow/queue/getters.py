"""Reading a queue: counts, pause state, jobs, repeats, dead letters."""

from __future__ import annotations

from ..inspect import (
    DeadEntry,
    JobInfo,
    QueueCounts,
    RepeatInfo,
    read_counts,
    read_dead,
    read_job,
)
from ..repeat import RepeatSpec
from .base import QueueBase


class Getters(QueueBase):
    """Read-only views of a queue."""

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(await self.client.hget(self.keys.meta, "paused") == b"1")

    async def counts(self, group: str | None = None) -> QueueCounts:
        """Waiting per level, pending, delayed, dead and consumers of ``group``."""
        return await read_counts(self.client, self.keys, group or self.settings.worker.group)

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

    async def get_job(self, job_id: str) -> JobInfo | None:
        """State, attempt, progress, result or error and timestamps of a job added with a
        caller-given id or ``track=True``; None when unknown or expired (after the dedup TTL)."""
        return await read_job(self.client, self.keys, job_id)

    async def dead(self, count: int = 100, start: str = "-") -> list[DeadEntry]:
        """Dead-lettered jobs, oldest first."""
        return await read_dead(self.client, self.keys, count, start)
