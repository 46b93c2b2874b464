"""Adding jobs: one round trip per add, one script call per chunk of a bulk add."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .. import scripts
from ..backoff import Backoff
from ..codec import delayed_record, encode_data, envelope_fields
from ..errors import DurabilityError, InvalidJob
from ..job import JobOptions
from ..metrics import metrics_for
from ..protocol import F_DATA, F_NAME, F_TRACEPARENT, F_TRACESTATE
from ..settings import Durability, to_ms, to_seconds
from ..telemetry import publish_span
from .base import CHUNK, QueueBase


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


class Producer(QueueBase):
    """``add`` and ``add_bulk``."""

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
