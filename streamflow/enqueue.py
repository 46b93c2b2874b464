"""The producer's add path: the add script's arguments, group commit of concurrent single
adds, and answers that survive a lost reply.

Every job is checked and encoded in its caller (``streamflow.addcheck``), before it joins a
batch: a bad job fails alone and nothing of it is written. Single adds made while another is in
flight share the next script call (``Coalescer``); a bulk add sends its chunks in one pipeline.
Consecutive plain jobs of one level, name and trace context travel as one run record: one
script argument per job.

Lost replies: redis-py sends a command again after a connection error, which would add the jobs
twice when Redis ran the first try and only the reply was lost. Each call therefore carries a
fresh token. A job with a caller-given id is tracked, and its status record is its dedup mark:
it holds the token, so the repeated call recognises its own job and answers the id, at no extra
cost. A call holding jobs without a caller-given id also stores its answer under a *reply key*
owned by one producer slot (``<producer>:<slot>:<chunk>``), and a repeated call finding its
token there returns that answer (a GET and a SET per call). A slot sends one call at a time and
its key is overwritten by the slot's next call, so the keys a producer leaves are bounded by its
peak concurrency (and expire after ``REPLY_TTL_MS``)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from . import scripts
from .addcheck import (
    business_keys,
    check_id,
    check_name,
    delay_ms,
    encode_payload,
    options_wire,
    shown,
)
from .backoff import Backoff
from .bulk import Run, chunks, job_ids, prepare_runs, send_in_turn
from .coalesce import Coalescer
from .codec import delayed_record
from .errors import UnknownPriority
from .keys import QueueKeys
from .protocol import (
    F_DATA,
    F_ENQUEUED,
    F_ID,
    F_INDEX,
    F_NAME,
    F_OPTIONS,
    F_TRACEPARENT,
    F_TRACESTATE,
    INDEX_RECORD,
    KEYED_RECORD,
    PLAIN_RECORD,
    RUN_RECORD,
)
from .replication import send_writes
from .settings import Durability, StreamflowSettings

CHUNK = 1000
"""Jobs per script call of a bulk add, and at most per coalesced call."""
BATCH_BYTES = 1 << 20
"""A coalesced call takes jobs up to this many bytes of payload (the first one always)."""
REPLY_TTL_MS = 300_000
"""How long a reply record outlives its call: longer than redis-py's retries of one command."""


class Spec(Protocol):
    """What ``prepare`` reads of a job (``JobSpec`` and the keyword arguments of ``add``)."""

    @property
    def name(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def priority(self) -> str | None: ...
    @property
    def delay(self) -> Any: ...
    @property
    def job_id(self) -> str | None: ...
    @property
    def attempts(self) -> int | None: ...
    @property
    def backoff(self) -> Backoff | None: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def track(self) -> bool: ...
    @property
    def keep_result(self) -> bool | None: ...


@dataclass(slots=True)
class Prepared:
    """One checked, encoded job: its record for the add script and the keys it references."""

    record: list[Any]
    keys: tuple[str, ...] = ()
    """Status record (the dedup mark of a caller-given id) and business-key indexes, numbered
    1.. in ``record`` until merged into a call."""
    size: int = 0
    keyed: bool = False
    """Whether the job has a caller-given id (its dedup mark recognises a repeated call)."""
    indexes: tuple[int, ...] = (3,)
    """Where ``record`` holds its key indexes (status, business-key indexes)."""
    plain: bool = False
    """A bare plain record: consecutive ones of one level, name and trace share a run record."""


class Enqueuer:
    """Turns jobs into add-script calls for one queue and sends them (``Queue._enqueuer``)."""

    def __init__(self, keys: QueueKeys, settings: StreamflowSettings, client: Any,
                 emit_added: bool) -> None:
        self.keys = keys
        self.settings = settings
        self.client = client
        self._emit = scripts.flag(emit_added)
        self._levels = {level: i for i, level in enumerate(settings.levels)}
        self._default_level = self._levels[settings.default_level]
        self._dedup_ttl_ms = int(settings.queue.dedup_ttl * 1000)
        self._max_bytes = settings.queue.max_payload_bytes
        self._track_wire = options_wire(None, None, None, True, None)
        self._id = os.urandom(6).hex()
        self._free_slots: list[int] = []
        self._slots = 0
        self._coalescers: dict[bool, Coalescer[Prepared, str | None]] = {
            replicated: Coalescer(self._sender(replicated), max_items=CHUNK,
                                  max_bytes=BATCH_BYTES, max_in_flight=2)
            for replicated in (False, True)}

    def level_index(self, priority: object) -> int:
        """The index of a priority level; ``UnknownPriority`` for a name not configured."""
        if priority is None:
            return self._default_level
        try:
            return self._levels[priority]  # type: ignore[index]
        except (KeyError, TypeError):
            raise UnknownPriority(f"unknown priority {shown(priority)}; levels are "
                                  f"{', '.join(self.settings.levels)}") from None

    def prepare(self, spec: Spec, now: int, traceparent: str | None = None,
                tracestate: str | None = None) -> Prepared:
        """Check and encode one job (raises before anything is written)."""
        return self.prepare_job(
            spec.name, spec.data, spec.priority, spec.delay, spec.job_id, spec.attempts,
            spec.backoff, spec.timeout, spec.track, spec.keep_result, now, traceparent,
            tracestate, index=getattr(spec, "index", None))

    def prepare_all(self, jobs: Sequence[Any], now: int, traceparent: str | None = None,
                    tracestate: str | None = None) -> list[Prepared | Run]:
        """``prepare`` of each job of a bulk add: a ``JobSpec``, or a ``(name, data)`` pair.
        Plain ones (no id, delay or options) take a short path unless the queue has
        ``index_fields``: consecutive ones of one level and name become one ``Run``."""
        trace = _trace(traceparent, tracestate)
        return prepare_runs(self, jobs, now, [len(trace), *trace], traceparent, tracestate)

    def prepare_job(self, name: Any, data: Any, priority: Any, delay: Any, job_id: Any,
                    attempts: Any, backoff: Any, timeout: Any, track: Any, keep_result: Any,
                    now: int | None, traceparent: str | None = None,
                    tracestate: str | None = None, *,
                    index: Mapping[str, str | int] | None = None) -> Prepared:
        """``prepare`` from the arguments of ``Queue.add``; ``index`` (and the queue's
        ``index_fields``) make the job findable by ``Queue.find``. ``now`` (ms) None: the
        clock is read if the job needs it (a delay)."""
        fields = self.settings.queue.index_fields  # read each time: a caller may change it
        if (delay is None and attempts is None and backoff is None and timeout is None
                and keep_result is None and index is None and not fields and not traceparent
                and not tracestate and (track is False if job_id is None
                                        else track is False or track is True)):
            # The webhook's adds, plain or with its event id: ``_prepare``'s records, checks
            # in its order, without its general case's work.
            name = check_name(name)
            raw = encode_payload(data, self._max_bytes)
            level = self._default_level if priority is None else self.level_index(priority)
            if job_id is None:
                return Prepared([PLAIN_RECORD, level, name, raw, 0], (), len(raw), False,
                                (3,), True)
            check_id(job_id)
            return Prepared([KEYED_RECORD, level, job_id, name, raw, self._track_wire or "", 1,
                             0], (self.keys.status(job_id),), len(raw), True, (6,))
        if index is None and not fields:
            return self._prepare(name, data, priority, delay, job_id, attempts, backoff,
                                 timeout, track, keep_result, now, traceparent, tracestate, [])
        found = business_keys(index, data, fields)
        extra: list[bytes | str] = [F_INDEX, orjson.dumps(found)] if found else []
        job = self._prepare(name, data, priority, delay, job_id, attempts, backoff, timeout,
                            track, keep_result, now, traceparent, tracestate, extra)
        if not found:
            return job
        queue = self.settings.queue
        first = len(job.keys) + 1
        record = [*job.record, INDEX_RECORD, first, len(found), int(queue.index_ttl * 1000),
                  queue.index_cap]
        keys = (*job.keys, *(self.keys.index(k, v) for k, v in found.items()))
        at = len(job.record) + 1
        return Prepared(record, keys, job.size, job.keyed,
                        (*job.indexes, at) if job.keys else (at,))

    def _prepare(self, name: Any, data: Any, priority: Any, delay: Any, job_id: Any,
                 attempts: Any, backoff: Any, timeout: Any, track: Any, keep_result: Any,
                 now: int | None, traceparent: str | None, tracestate: str | None,
                 extra: list[bytes | str]) -> Prepared:
        name = check_name(name)
        raw = encode_payload(data, self._max_bytes)
        level = self.level_index(priority)
        trace = _trace(traceparent, tracestate) + extra
        if (job_id is None and delay is None and attempts is None and backoff is None
                and timeout is None and track is False and keep_result is None):
            return Prepared([PLAIN_RECORD, level, name, raw, len(trace), *trace], (), len(raw),
                            plain=True)
        given_id = job_id
        if job_id is not None:
            check_id(job_id)
        track = track or job_id is not None
        if attempts is None and backoff is None and timeout is None and keep_result is None \
                and track is True:
            wire: bytes | None = self._track_wire  # the webhook's options: tracked only
        else:
            wire = options_wire(attempts, backoff, timeout, track, keep_result)
        due = 0
        if delay is not None:
            if now is None:
                now = int(time.time() * 1000)
            due = now + delay_ms(delay)
            if due == now:
                due = 0
        if (due or track) and job_id is None:
            job_id = os.urandom(10).hex()
        keys = (self.keys.status(job_id),) if track else ()
        if given_id is not None and not due:  # the webhook's add: a short record
            return Prepared([KEYED_RECORD, level, job_id, name, raw, wire or "", 1,
                             len(trace), *trace], keys, len(raw), True, (6,))
        fields: list[bytes | str] = [F_NAME, name, F_DATA, raw]
        if job_id is not None:
            fields += [F_ID, job_id]
        if due:
            fields += [F_ENQUEUED, str(now)]
        if wire is not None:
            fields += [F_OPTIONS, wire]
        fields += trace
        keyed = 1 if given_id is not None else 0  # dedup on the status record
        status_index = 1 if track else 0
        if due:
            record = [level, due, keyed, status_index, job_id,
                      delayed_record(level, fields), name, 0]
        else:
            record = [level, 0, keyed, status_index, job_id or "", "", name,
                      len(fields), *fields]
        return Prepared(record, tuple(keys), len(raw), given_id is not None)

    def command(self, jobs: Sequence[Prepared | Run], owner: str, token: str,
                now: int) -> scripts.Command:
        """The add-script call of ``jobs``; key indexes renumbered across the jobs."""
        keys = self.keys
        extra: list[str] = []
        reply_ttl = 0 if all(isinstance(job, Prepared) and job.keyed for job in jobs) \
            else REPLY_TTL_MS
        args: list[Any] = [now, len(keys.streams), self._emit, self.settings.queue.events_maxlen,
                           self._dedup_ttl_ms, token, reply_ttl, *keys.levels]
        run = -1  # where args holds the job count of the open run record (-1: none)
        level: Any = None
        name: Any = None
        rest: list[Any] = []
        for job in jobs:
            if isinstance(job, Run):
                run = -1
                args += job.args()
                continue
            record = job.record
            if job.plain:  # ["p", level, name, data, T, *trace]: joins or opens a run
                if run >= 0 and record[1] == level and record[2] == name and (
                        record[4] == 0 == rest[0] or record[4:] == rest):
                    args[run] += 1
                    args.append(record[3])
                    continue
                level, name, rest = record[1], record[2], record[4:]
                args += (RUN_RECORD, level, name, *rest)
                run = len(args)
                args += (1, record[3])
                continue
            run = -1
            start = len(args)
            args += record
            if job.keys:
                offset = len(extra)
                for at in job.indexes:
                    if record[at]:
                        args[start + at] = record[at] + offset
                extra += job.keys
        return scripts.ADD_JOBS.command(
            [keys.delayed, keys.jobs, keys.events, keys.reply(owner), keys.where, *keys.streams,
             *extra],
            args)

    def add(self, job: Prepared, durability: Durability) -> Awaitable[str | None]:
        """Send one job with whatever else is being added meanwhile: the awaitable of its id
        (None: a duplicate), to be awaited at once."""
        return self._coalescers[durability == "replicated"].join(job, job.size)

    async def add_many(self, jobs: Sequence[Prepared | Run], durability: Durability
                       ) -> list[str | None]:
        """Send jobs in chunks of ``CHUNK`` on one connection (``bulk.send_in_turn``; with
        ``durability="replicated"`` or on Redis Cluster, as one pipeline); ids in order."""
        slot = self._take_slot()
        try:
            token = os.urandom(8).hex()
            now = int(time.time() * 1000)
            parts = list(chunks(jobs, CHUNK))

            def command(i: int) -> scripts.Command:  # marks tell the chunks apart
                return self.command(parts[i], f"{self._id}:{slot}:{i}", f"{token}.{i}", now)

            if durability != "replicated":
                replies = await send_in_turn(self.client, command, len(parts))
                if replies is not None:
                    return job_ids(replies)
            return await self._send([command(i) for i in range(len(parts))],
                                    durability == "replicated")
        finally:
            self._free_slots.append(slot)

    def _take_slot(self) -> int:
        if self._free_slots:
            return self._free_slots.pop()
        self._slots += 1
        return self._slots

    def _sender(self, replicated: bool
                ) -> Callable[[list[Prepared]], Awaitable[list[str | None]]]:
        async def send(jobs: list[Prepared]) -> list[str | None]:
            slot = self._take_slot()
            try:
                command = self.command(jobs, f"{self._id}:{slot}:0", os.urandom(8).hex(),
                                       int(time.time() * 1000))
                return await self._send([command], replicated)
            finally:
                self._free_slots.append(slot)
        return send

    async def _send(self, commands: list[scripts.Command], replicated: bool
                    ) -> list[str | None]:
        return job_ids(await send_writes(self.client, commands, replicated=replicated,
                                         timeout_s=self.settings.queue.replicated_timeout))


def _trace(traceparent: str | None, tracestate: str | None) -> list[bytes | str]:
    """The stream fields of a job's trace context."""
    trace: list[bytes | str] = []
    if traceparent:
        trace += [F_TRACEPARENT, traceparent]
    if tracestate:
        trace += [F_TRACESTATE, tracestate]
    return trace
