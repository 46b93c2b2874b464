"""QueueKeys: every Redis key name of a queue, derived in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import InvalidQueueName

_QUEUE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue. ``{queue}`` is a Cluster hash tag: all keys share one slot.

    Partition ``i`` of a partitioned queue has the same layout under the tag ``{queue#i}``;
    ``partition=None`` is the unpartitioned layout (whose ``meta`` also holds the partition
    count of a partitioned queue).

    >>> QueueKeys("payments").level("high")
    'sf:{payments}:p:high'
    >>> QueueKeys("payments", partition=3).level("high")
    'sf:{payments#3}:p:high'
    """

    queue: str
    prefix: str = "sf"
    levels: tuple[str, ...] = ("high", "normal", "low")
    partition: int | None = None
    base: str = field(init=False)
    streams: tuple[str, ...] = field(init=False)
    delayed: str = field(init=False)
    jobs: str = field(init=False)
    dead: str = field(init=False)
    events: str = field(init=False)
    done: str = field(init=False)
    workers: str = field(init=False)
    repeat: str = field(init=False)
    repeat_last: str = field(init=False)
    meta: str = field(init=False)
    limiter: str = field(init=False)
    keylocks: str = field(init=False)

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        tag = self.queue if self.partition is None else f"{self.queue}#{self.partition}"
        base = f"{self.prefix}:{{{tag}}}"
        put = object.__setattr__
        put(self, "base", base)
        put(self, "streams", tuple(f"{base}:p:{level}" for level in self.levels))
        for name in ("delayed", "jobs", "dead", "events", "done", "workers", "repeat", "meta",
                     "limiter", "keylocks"):
            put(self, name, f"{base}:{name}")
        put(self, "repeat_last", f"{base}:repeat:last")

    def part(self, partition: int) -> QueueKeys:
        """The keys of partition ``partition`` of this queue."""
        return QueueKeys(self.queue, self.prefix, self.levels, partition)

    def level(self, name: str) -> str:
        """The stream of priority level ``name``."""
        return self.streams[self.levels.index(name)]

    def dedup(self, job_id: str) -> str:
        """The idempotency mark of a caller-given job id."""
        return f"{self.base}:dedup:{job_id}"

    def held(self, key: str) -> str:
        """The jobs of ``key`` waiting for the one that runs (ordered queues)."""
        return f"{self.base}:held:{key}"

    def status(self, job_id: str) -> str:
        """The status record of a tracked job."""
        return f"{self.base}:status:{job_id}"

    def reply(self, owner: str) -> str:
        """The answer of a producer slot's last add call, kept for a retry of that call."""
        return f"{self.base}:reply:{owner}"

    # -- the control plane (issue 13): browsing, business-key index, logs, metrics ----------

    @property
    def where(self) -> str:
        """Hash: job id -> ``<level index>:<entry id>`` of a job with an explicit id in a stream."""
        return f"{self.base}:where"

    @property
    def control(self) -> str:
        """Stream of requests the workers read (cancel a running job)."""
        return f"{self.base}:control"

    @property
    def audit(self) -> str:
        """Stream of operator actions on single jobs (who changed what), capped."""
        return f"{self.base}:audit"

    def index(self, field: str, value: str) -> str:
        """The business-key index of ``field`` = ``value``: zset of job ids by add time."""
        return f"{self.base}:ix:{field}:{value}"

    def job_log(self, job_id: str) -> str:
        """The log lines of one job (``job.log``), capped and expiring."""
        return f"{self.base}:log:{job_id}"

    def metrics_minute(self, minute_ms: int | str) -> str:
        """Completed/failed counters of one minute (hash ``c``, ``f``), expiring."""
        return f"{self.base}:metrics:{minute_ms}"


def check_queue_name(name: str) -> str:
    """``name`` if it can name a queue: 1-100 letters, digits, ``.``, ``_`` or ``-``.

    Anything else could break the Cluster hash tag or reach a SCAN pattern as a glob (``*``
    would match other queues' keys), so it is refused with ``InvalidQueueName``.
    """
    if not isinstance(name, str) or _QUEUE_NAME.fullmatch(name) is None:
        raise InvalidQueueName(
            f"invalid queue name {name!r}: use 1-100 letters, digits, '.', '_' or '-'")
    return name
