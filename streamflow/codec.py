"""The envelope: a job <-> the fields of one stream entry (orjson, never pickle).

A plain job is stored as two fields, ``n`` (name) and ``d`` (data, JSON), so every entry of a
stream shares the field names of the node's master entry and Redis stores only the values.
Fields that are usually absent:

``i``  job id; absent on a first attempt added without one, whose id is ``<level>:<entry id>``
``a``  attempt number, when > 1
``t``  enqueue time (ms), when it differs from the entry id's time
``o``  options differing from the queue defaults (JSON)
``tp`` / ``ts``  W3C traceparent / tracestate
``k``  business keys the job is indexed under (JSON object), for ``Queue.find``
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import PayloadNotSerializable, PayloadTooLarge
from .job import NO_OPTIONS, Job, JobOptions
from .protocol import DEAD_PREFIX as DEAD_PREFIX
from .protocol import (
    F_ATTEMPT,
    F_DATA,
    F_ENQUEUED,
    F_ID,
    F_KEY,
    F_NAME,
    F_OPTIONS,
    F_TRACEPARENT,
    F_TRACESTATE,
    implicit_job_id,
)


class MalformedEntry(ValueError):
    """A stream entry that is not a streamflow envelope."""


def encode_data(data: Any, max_bytes: int) -> bytes:
    """``data`` as JSON bytes; refused when not serializable or over ``max_bytes``."""
    try:
        raw = orjson.dumps(data)
    except TypeError as exc:
        raise PayloadNotSerializable(f"job data is not JSON-serializable: {exc}") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"job data is {len(raw)} bytes, over the limit of {max_bytes}")
    return raw


def envelope_fields(
    name: str,
    data: bytes,
    *,
    job_id: str | None = None,
    attempt: int = 1,
    enqueued_ms: int | None = None,
    options: JobOptions = NO_OPTIONS,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> list[bytes | str]:
    """The flat field list of an envelope, only the fields that carry information."""
    fields: list[bytes | str] = [F_NAME, name, F_DATA, data]
    if job_id is not None:
        fields += [F_ID, job_id]
    if attempt != 1:
        fields += [F_ATTEMPT, str(attempt)]
    if enqueued_ms is not None:
        fields += [F_ENQUEUED, str(enqueued_ms)]
    wire = options.to_wire()
    if wire is not None:
        fields += [F_OPTIONS, orjson.dumps(wire)]
    if traceparent:
        fields += [F_TRACEPARENT, traceparent]
    if tracestate:
        fields += [F_TRACESTATE, tracestate]
    return fields


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A flat ``[k1, v1, k2, v2, ...]`` reply as a dict."""
    if len(flat) == 4:  # a plain envelope (name, data): the hot path
        return {flat[0]: flat[1], flat[2]: flat[3]}
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def decode_job(
    entry_id: bytes, fields: dict[bytes, bytes], queue: str, level: str
) -> Job:
    """The job held by a stream entry; raises ``MalformedEntry`` for anything else."""
    try:
        entry = entry_id.decode()
        name = fields[F_NAME].decode()
        data = orjson.loads(fields[F_DATA])
        if len(fields) == 2 and name:  # a plain first attempt: positional, no lookups
            return Job(implicit_job_id(level, entry), name, data, 1, int(entry[:entry.index("-")]),
                       queue, level, entry, NO_OPTIONS, None, None, fields)
        raw_id = fields.get(F_ID)
        raw_attempt = fields.get(F_ATTEMPT)
        raw_enqueued = fields.get(F_ENQUEUED)
        raw_options = fields.get(F_OPTIONS)
        raw_tp = fields.get(F_TRACEPARENT)
        raw_ts = fields.get(F_TRACESTATE)
        job = Job(
            id=raw_id.decode() if raw_id is not None else implicit_job_id(level, entry),
            name=name,
            data=data,
            attempt=int(raw_attempt) if raw_attempt is not None else 1,
            enqueued_ms=int(raw_enqueued) if raw_enqueued is not None
            else int(entry.partition("-")[0]),
            queue=queue,
            level=level,
            entry_id=entry,
            options=JobOptions.from_wire(orjson.loads(raw_options))
            if raw_options is not None else NO_OPTIONS,
            traceparent=raw_tp.decode() if raw_tp is not None else None,
            tracestate=raw_ts.decode() if raw_ts is not None else None,
            fields=fields,
        )
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise MalformedEntry(f"{type(exc).__name__}: {exc}") from None
    if job.attempt < 1 or not name:
        raise MalformedEntry("attempt must be >= 1 and name non-empty")
    return job


def next_attempt_fields(job: Job, *, spend_attempt: bool = True) -> list[bytes | str]:
    """The envelope of ``job``'s next run: same id, data, options and trace; the attempt number
    grows unless the run was refused for a reason that is not the job's (a rate limit)."""
    fields = envelope_fields(
        job.name,
        job.fields[F_DATA],
        job_id=job.id,
        attempt=job.attempt + 1 if spend_attempt else job.attempt,
        enqueued_ms=job.enqueued_ms,
        options=job.options,
        traceparent=job.traceparent,
        tracestate=job.tracestate,
    )
    key = job.fields.get(F_KEY)
    if key is not None:  # the key of an ordered queue's job stays with it until it ends
        fields += [F_KEY, key]
    return fields


def delayed_record(level_index: int, fields: list[bytes | str]) -> bytes:
    """What the ``jobs`` hash holds for a delayed job: ``[level, f1, v1, ...]`` as JSON.

    The promoter script decodes it with cjson, so every field is a JSON string.
    """
    return orjson.dumps(
        [level_index, *(f.decode() if isinstance(f, bytes) else f for f in fields)]
    )
