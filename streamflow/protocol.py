"""The job protocol, written once: what streamflow stores in Redis and what it means.

Python code and the Lua scripts share these names; ``tests/unit/test_protocol.py`` reads every
``lua/*.lua`` file and fails on a field, state or event literal not defined here.

Envelope (one stream entry per job; only the fields that carry information):

``n`` name, ``d`` data (JSON), ``i`` job id (absent on a first attempt added without one:
its id is then ``<level>:<entry id>``, see ``implicit_job_id``), ``a`` attempt when > 1,
``t`` enqueue time (ms) when it differs from the entry id's, ``o`` options (JSON),
``tp`` / ``ts`` W3C traceparent / tracestate, ``k`` the key of a job of an ordered queue.
"""

from __future__ import annotations

from enum import StrEnum

# -- the envelope -----------------------------------------------------------------------------
F_NAME = b"n"
F_DATA = b"d"
F_ID = b"i"
F_ATTEMPT = b"a"
F_ENQUEUED = b"t"
F_OPTIONS = b"o"
F_TRACEPARENT = b"tp"
F_TRACESTATE = b"ts"
F_INDEX = b"k"
"""The business keys a job is indexed under (JSON object), for ``Queue.find``."""
F_KEY = b"ok"
"""The ordering key of a job of an ordered queue (at most one job per key out at a time)."""
ENVELOPE_FIELDS = frozenset({"n", "d", "i", "a", "t", "o", "tp", "ts", "k", "ok"})

HELD_SEPARATOR = "|"
"""Between the due time and the job id in an item of a held list (ordered queues)."""

# -- dead letters: the envelope plus these --------------------------------------------------
DEAD_PREFIX = b"x:"
DEAD_FIELDS = frozenset({
    "x:reason", "x:error", "x:tb", "x:at", "x:level",
    "x:src",     # the entry id the job had on its level stream
    "x:record",  # a delayed record that did not decode, as it was
})


class DeadReason(StrEnum):
    """Why a job is in the dead letters."""

    FAILED = "failed"
    DISCARDED = "discarded"
    STALLED = "stalled"
    KILLED_WORKER = "killed_worker"
    """Stalled past ``max_stalled_count`` while its workers died (or froze) mid-job."""
    CRASHED = "crashed"
    """Its handler's child process died on the last attempt (``isolation="process"``)."""
    MALFORMED = "malformed"
    NO_HANDLER = "no_handler"
    CANCELLED = "cancelled"


# -- the done stream: results of completed jobs --------------------------------------------
DONE_FIELDS = frozenset({"i", "n", "ms", "r"})


class JobState(StrEnum):
    """Where a job is in its life (the ``state`` of its status record)."""

    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    RETRYING = "retrying"
    DEAD = "dead"
    UNKNOWN = "unknown"


STATUS_FIELDS = frozenset({
    "state", "name", "attempt", "added_ms", "started_ms", "consumer", "error", "due_ms",
    "reason", "finished_ms", "duration_ms", "result", "progress",
    "mark",   # token of the add call (a resent call recognises its own job)
    "where",  # "<level index>:<entry id>" the add put it at (as the where hash holds later)
})
"""Fields of a tracked job's status record (``sf:{q}:status:<id>``), which is also the dedup mark
of a caller-given id."""


# -- the events stream ------------------------------------------------------------------------
class EventName(StrEnum):
    """Lifecycle events written to the events stream (field ``e``)."""

    ADDED = "added"
    DELAYED = "delayed"
    WAITING = "waiting"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    RETRYING = "retrying"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"
    DEAD = "dead"
    STALLED = "stalled"
    RECLAIMED = "reclaimed"
    PAUSED = "paused"
    RESUMED = "resumed"
    REMOVED = "removed"
    CANCELLING = "cancelling"
    UPDATED = "updated"


EVENT_FIELDS = frozenset({
    "e",       # the event name
    "i", "n",  # job id and name
    "a", "err", "due", "ms", "reason",
    "from",    # where a job came back from (dead)
    "p",       # a progress value (JSON)
    "deliveries",  # of a stalled entry
})

# -- the workers hash: consumer name -> heartbeat (JSON) -------------------------------------
WORKER_FIELDS = frozenset({
    "host", "pid", "concurrency", "group", "started_ms", "last_seen_ms", "processed", "failed",
    "active",
})

# -- the meta hash: pause and rate limit, shared by every worker of the queue ----------------
META_FIELDS = frozenset({"paused", "limited_until", "rl_max", "rl_ms", "rl_margin_ms"})

# -- the control plane: per-job actions, cancel requests, audit, stored metrics --------------
CONTROL_FIELDS = frozenset({
    "c", "cancel",  # the request kind: cancel
    "l", "e",       # level index and entry id of the run to cancel
    "at",           # when (ms)
})
"""Fields of a request on the control stream (``sf:{q}:control``) the workers read."""

AUDIT_FIELDS = frozenset({"act", "by", "at", "to", "old_bytes", "dead_id"})
"""Fields of an audit record (``sf:{q}:audit``), beside ``i`` (job id), ``from``, ``d``."""


class JobAction(StrEnum):
    """Operator actions on one job, as the audit stream names them (field ``act``)."""

    REMOVE = "remove"
    CANCEL = "cancel"
    PROMOTE = "promote"
    RESCHEDULE = "reschedule"
    RETRY = "retry"
    RETRY_EDIT = "retry_edit"
    UPDATE_DATA = "update_data"


METRIC_FIELDS = frozenset({"c", "f"})
"""Fields of a minute's metrics hash: completed, failed (dead-lettered) jobs."""

SCRIPT_WORDS = frozenset({
    "stream", "more", "done", "missing",  # clean_jobs kinds and cursor, entry states
    "!active", "!done", "!missing", "!dead", "!malformed",  # refusals of the control scripts
    "(", "-0", "+inf",  # parts of exclusive stream ids and score ranges
    "\\255",  # the separator of an add's reply record (Lua's escape of the byte 0xFF)
})
"""Words the per-job control scripts answer or build ranges with."""

# -- script arguments ------------------------------------------------------------------------
EMIT = "1"
"""The events flag a script takes: ``"1"`` to write events, ``"0"`` not."""
NO_EMIT = "0"

NOTHING_WAITS = -1
"""The marker in the fetch script's reply before the last id of each level stream."""

PLAIN_RECORD = "p"
"""First argument of an add-script job record with no id, delay or options (a short record)."""
RUN_RECORD = "r"
"""First argument of an add-script record of several plain jobs of one level, name and trace."""
KEYED_RECORD = "k"
"""First argument of an add-script record of a job with a caller-given id and no delay."""
INDEX_RECORD = "x"
"""First argument of the business-key indexes following a job's record in an add-script call."""


def flag(value: bool) -> str:
    """A boolean script argument (the events flag)."""
    return EMIT if value else NO_EMIT


def implicit_job_id(level: str, entry_id: str) -> str:
    """The id of a job added without one: unique only with its level, as entry ids are unique
    within one stream."""
    return f"{level}:{entry_id}"


def protocol_literals() -> frozenset[str]:
    """Every name above: what a Lua script may spell out."""
    return (ENVELOPE_FIELDS | DEAD_FIELDS | DONE_FIELDS | STATUS_FIELDS | EVENT_FIELDS
            | META_FIELDS | CONTROL_FIELDS | AUDIT_FIELDS | METRIC_FIELDS | SCRIPT_WORDS
            | WORKER_FIELDS
            | {str(m) for m in (*DeadReason, *JobState, *EventName, *JobAction)}
            | {DEAD_PREFIX.decode(), PLAIN_RECORD, RUN_RECORD, KEYED_RECORD, INDEX_RECORD,
               HELD_SEPARATOR})
