"""Job: what a handler receives; JobOptions: what a producer may set per job."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .backoff import Backoff
from .protocol import JobState as JobState


class Priority(StrEnum):
    """The default priority levels, highest first."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job overrides of the queue defaults; ``None`` means "the queue's default"."""

    attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    track: bool = False
    """Keep a status record (``Queue.get_job``); always on for jobs with a caller-given id."""
    keep_result: bool | None = None
    """False: do not keep this job's result in the ``done`` stream (None: the queue default)."""

    def to_wire(self) -> dict[str, object] | None:
        wire: dict[str, object] = {}
        if self.attempts is not None:
            wire["a"] = self.attempts
        if self.backoff is not None:
            wire["b"] = self.backoff.to_list()
        if self.timeout is not None:
            wire["to"] = self.timeout
        if self.track:
            wire["tr"] = 1
        if self.keep_result is not None:
            wire["kr"] = int(self.keep_result)
        return wire or None

    @classmethod
    def from_wire(cls, wire: object) -> JobOptions:
        if not isinstance(wire, dict):
            raise ValueError("options must be an object")
        attempts = wire.get("a")
        timeout = wire.get("to")
        if timeout is not None and not (math.isfinite(float(timeout)) and float(timeout) > 0):
            raise ValueError(f"bad timeout {timeout!r}")
        return cls(
            attempts=int(attempts) if attempts is not None else None,
            backoff=Backoff.from_list(wire["b"]) if "b" in wire else None,
            timeout=float(timeout) if timeout is not None else None,
            track=bool(wire.get("tr")),
            keep_result=bool(wire["kr"]) if "kr" in wire else None,
        )


NO_OPTIONS = JobOptions()


@dataclass(slots=True, eq=False)
class Job:
    """One job as a handler sees it.

    ``attempt`` is 1 on the first run and grows with each retry; a stalled redelivery does not
    spend an attempt. ``entry_id`` is the stream entry being processed (it changes on retries;
    ``id`` does not).
    """

    id: str
    name: str
    data: Any
    attempt: int
    enqueued_ms: int
    queue: str
    level: str
    entry_id: str
    options: JobOptions = NO_OPTIONS
    traceparent: str | None = None
    tracestate: str | None = None
    fields: dict[bytes, bytes] = field(default_factory=dict, repr=False)
    _progress: Callable[[Job, object], Awaitable[None]] | None = field(default=None, repr=False)
    _log: Callable[[str, str], Awaitable[None]] | None = field(default=None, repr=False)

    @property
    def enqueued_at(self) -> datetime:
        """When the job was first added (UTC)."""
        return datetime.fromtimestamp(self.enqueued_ms / 1000, tz=UTC)

    async def progress(self, value: float | dict[str, Any]) -> None:
        """Report progress (a number or a dict): stored on the job status and sent as an event."""
        if self._progress is not None:
            await self._progress(self, value)

    async def log(self, line: str) -> None:
        """Append ``line`` to this job's log (``Queue.job_logs``, ``streamflow logs``): the last
        lines are kept (100 by default), expiring with the job's other records."""
        if self._log is not None:
            await self._log(self.id, line)
