"""The producer's add path: checks at the boundary, the add script's arguments, group commit
of concurrent single adds, and answers that survive a lost reply.

Every job is checked and encoded in its caller, before it joins a batch: a bad job fails alone
and nothing of it is written. Single adds made while another is in flight share the next
script call (``Coalescer``); a bulk add sends its chunks in one pipeline.

Lost replies: redis-py sends a command again after a connection error, which would add the jobs
twice when Redis ran the first try and only the reply was lost. Each call therefore carries a
fresh token. A job with a caller-given id writes the token (and its place in the call) as its
dedup mark, so the repeated call recognises its own mark and answers the id, at no extra cost.
A call holding jobs without a caller-given id also stores its answer under a *reply key* owned
by one producer slot (``<producer>:<slot>:<chunk>``), and a repeated call finding its token
there returns that answer (a GET and a SET per call). A slot sends one call at a time and its
key is overwritten by the slot's next call, so the keys a producer leaves are bounded by its
peak concurrency (and expire after ``REPLY_TTL_MS``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.exceptions import OutOfMemoryError

from . import scripts
from .backoff import Backoff
from .coalesce import Coalescer
from .codec import delayed_record, encode_data
from .errors import (
    DurabilityError,
    InvalidJob,
    PayloadNotSerializable,
    QueueFull,
    UnknownPriority,
)
from .job import JobOptions
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
)
from .settings import Durability, StreamflowSettings, to_seconds

CHUNK = 1000
"""Jobs per script call of a bulk add, and at most per coalesced call."""
BATCH_BYTES = 1 << 20
"""A coalesced call takes jobs up to this many bytes of payload (the first one always)."""
REPLY_TTL_MS = 300_000
"""How long a reply record outlives its call: longer than redis-py's retries of one command."""
MAX_ID_LENGTH = 1024


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


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidJob(f"{what} must be a non-empty string, not {_shown(value)}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidJob(f"{what} is not valid UTF-8 (a lone surrogate?): {value!r}") from None
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


def encode_payload(data: Any, max_bytes: int) -> bytes:
    """``data`` as JSON; refused when it holds NaN or an infinity (JSON has neither: orjson
    would store null), is not serializable or is over ``max_bytes``."""
    raw = encode_data(data, max_bytes)
    if b"null" in raw and _non_finite(data):  # orjson writes NaN/inf as null: look only then
        raise PayloadNotSerializable("job data holds NaN or an infinity, which JSON cannot carry")
    return raw


_WIRE: dict[tuple[Any, ...], bytes | None] = {}


def options_wire(attempts: Any, backoff: Any, timeout: Any, track: Any,
                 keep_result: Any) -> bytes | None:
    """The envelope's options field of a job (None when all are the queue's defaults);
    ``InvalidJob`` for values a worker could not honour. Checked combinations are cached."""
    key: tuple[Any, ...] = (attempts, type(attempts), backoff, timeout, type(timeout), track,
                            type(track), keep_result, type(keep_result))  # True == 1: types too
    try:
        return _WIRE[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: surely a bad one, checked below
        key = ()
    if attempts is not None and (type(attempts) is not int or attempts < 1):
        raise InvalidJob(f"attempts must be an integer >= 1, not {_shown(attempts)}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, int | float) or not math.isfinite(timeout) or timeout <= 0):
        raise InvalidJob(f"timeout must be a finite number of seconds > 0, not "
                         f"{_shown(timeout)}")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidJob(f"backoff must be a Backoff, not {_shown(backoff)}")
    if not isinstance(track, bool) or not isinstance(keep_result, bool | None):
        raise InvalidJob("track and keep_result must be booleans")
    options = JobOptions(attempts, backoff, float(timeout) if timeout is not None else None,
                         track, keep_result)
    wire = options.to_wire()
    encoded = orjson.dumps(wire) if wire is not None else None
    if key and len(_WIRE) < 1024:
        _WIRE[key] = encoded
    return encoded


def delay_ms(delay: Any) -> int:
    """Whole ms of a delay (``timedelta`` or seconds); 0 or less means now."""
    try:
        seconds = to_seconds(delay)
    except (TypeError, ValueError, OverflowError):
        raise InvalidJob(f"delay must be seconds or a timedelta, not {_shown(delay)}") from None
    if not math.isfinite(seconds) or seconds > 10 * 365 * 86400:
        raise InvalidJob(f"delay must be finite and at most 10 years, not {_shown(delay)}")
    return round(seconds * 1000) if seconds > 0 else 0


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
        self._id = os.urandom(6).hex()
        self._free_slots: list[int] = []
        self._slots = 0
        self._coalescers: dict[bool, Coalescer[Prepared, str | None]] = {
            replicated: Coalescer(self._sender(replicated), max_items=CHUNK,
                                  max_bytes=BATCH_BYTES)
            for replicated in (False, True)}

    def level_index(self, priority: object) -> int:
        """The index of a priority level; ``UnknownPriority`` for a name not configured."""
        if priority is None:
            return self._default_level
        try:
            return self._levels[priority]  # type: ignore[index]
        except (KeyError, TypeError):
            raise UnknownPriority(f"unknown priority {_shown(priority)}; levels are "
                                  f"{', '.join(self.settings.levels)}") from None

    def prepare(self, spec: Spec, now: int, traceparent: str | None = None,
                tracestate: str | None = None) -> Prepared:
        """Check and encode one job (raises before anything is written)."""
        return self.prepare_job(
            spec.name, spec.data, spec.priority, spec.delay, spec.job_id, spec.attempts,
            spec.backoff, spec.timeout, spec.track, spec.keep_result, now, traceparent,
            tracestate, index=getattr(spec, "index", None))

    def prepare_job(self, name: Any, data: Any, priority: Any, delay: Any, job_id: Any,
                    attempts: Any, backoff: Any, timeout: Any, track: Any, keep_result: Any,
                    now: int, traceparent: str | None = None, tracestate: str | None = None,
                    *, index: Mapping[str, str | int] | None = None) -> Prepared:
        """``prepare`` from the arguments of ``Queue.add``; ``index`` (and the queue's
        ``index_fields``) make the job findable by ``Queue.find``."""
        found = business_keys(index, data, self.settings.queue.index_fields)
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
                 now: int, traceparent: str | None, tracestate: str | None,
                 extra: list[bytes | str]) -> Prepared:
        name = _text(name, "a job name")
        raw = encode_payload(data, self._max_bytes)
        level = self.level_index(priority)
        trace: list[bytes | str] = []
        if traceparent:
            trace += [F_TRACEPARENT, traceparent]
        if tracestate:
            trace += [F_TRACESTATE, tracestate]
        trace += extra
        if (job_id is None and delay is None and attempts is None and backoff is None
                and timeout is None and track is False and keep_result is None):
            return Prepared([PLAIN_RECORD, level, name, raw, len(trace), *trace], size=len(raw))
        given_id = job_id
        if job_id is not None:
            _text(job_id, "job_id")
            if len(job_id) > MAX_ID_LENGTH:
                raise InvalidJob(f"job_id is {len(job_id)} characters, over {MAX_ID_LENGTH}")
        track = track or job_id is not None
        wire = options_wire(attempts, backoff, timeout, track, keep_result)
        due = now + delay_ms(delay) if delay is not None else 0
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

    def command(self, jobs: Sequence[Prepared], owner: str, token: str,
                now: int) -> scripts.Command:
        """The add-script call of ``jobs``; key indexes renumbered across the jobs."""
        keys = self.keys
        extra: list[str] = []
        reply_ttl = 0 if all(job.keyed for job in jobs) else REPLY_TTL_MS
        args: list[Any] = [now, len(keys.streams), self._emit, self.settings.queue.events_maxlen,
                           self._dedup_ttl_ms, token, reply_ttl, *keys.levels]
        for job in jobs:
            record = job.record
            if job.keys:
                record = list(record)
                offset = len(extra)
                for at in job.indexes:
                    if record[at]:
                        record[at] += offset
                extra += job.keys
            args += record
        return scripts.ADD_JOBS.command(
            [keys.delayed, keys.jobs, keys.events, keys.reply(owner), keys.where, *keys.streams,
             *extra],
            args)

    async def add(self, job: Prepared, durability: Durability) -> str | None:
        """Send one job with whatever else is being added meanwhile; its id (None: duplicate)."""
        return await self._coalescers[durability == "replicated"].submit(job, job.size)

    async def add_many(self, jobs: Sequence[Prepared], durability: Durability
                       ) -> list[str | None]:
        """Send jobs in chunks of ``CHUNK``, all in one pipeline; ids in order."""
        slot = self._take_slot()
        try:
            token = os.urandom(8).hex()
            now = int(time.time() * 1000)
            commands = [self.command(jobs[start:start + CHUNK], f"{self._id}:{slot}:{i}",
                                     f"{token}.{i}", now)  # marks tell the chunks apart
                        for i, start in enumerate(range(0, len(jobs), CHUNK))]
            return await self._send(commands, durability == "replicated")
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
        queue = self.settings.queue
        if replicated:
            commands = [*commands, ("WAIT", 1, int(queue.replicated_timeout * 1000))]
        results = await scripts.pipeline(self.client, commands)
        for result in results:
            if isinstance(result, OutOfMemoryError):
                raise QueueFull("Redis is full (maxmemory reached) and refused the add; retry "
                                "later" + (" (chunks of 1,000 before the refused one were "
                                           "added)" if len(commands) > 1 else "")) from result
            if isinstance(result, Exception):
                raise result
        if replicated and results.pop() < 1:
            raise DurabilityError(
                f"no replica confirmed the add within {queue.replicated_timeout:g}s; "
                "retry it with the same job_id")
        ids: list[str | None] = []
        for chunk in results:
            ids += [item.decode() if isinstance(item, bytes) else None for item in chunk]
        return ids



def business_keys(index: Mapping[str, str | int] | None, data: Any,
                  fields: Sequence[str]) -> dict[str, str]:
    """The business keys a job is indexed under: ``index`` plus the queue's ``index_fields``
    found at the top level of ``data``; ``InvalidJob`` for an empty or oversized one."""
    found: dict[str, str] = {}
    if fields and isinstance(data, dict):
        for name in fields:
            value = data.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                found[name] = str(value)
    for name, value in (index or {}).items():
        found[str(name)] = str(value)
    for name, value in found.items():
        if not name or not value or len(name) > 100 or len(value) > 200:
            raise InvalidJob(f"index {name!r}={value!r}: field and value must be non-empty, "
                             "at most 100 and 200 characters")
    return found
