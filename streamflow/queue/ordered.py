"""Per-key order: the add command of keyed jobs on an ordered queue, and the release a worker
sends when such a job ends.

At most one job of a key is out in a partition (waiting, running, retrying, delayed); the key
locks hash names it. Later jobs of the key wait in the key's held list, in the order added.
When the job that holds the key completes or is dead-lettered, the release (in the same
pipeline as its ack) lets the next held job go to its level stream. A retry keeps the key:
the later jobs of that key wait out its backoff too (the price of order).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import scripts
from ..addcheck import check_id, check_name, delay_ms, encode_payload, options_wire
from ..bulk import job_ids
from ..codec import delayed_record, envelope_fields
from ..job import JobOptions
from ..keys import QueueKeys
from ..protocol import DEAD_PREFIX, F_ID, F_KEY, DeadReason
from ..replication import send_writes
from ..settings import Durability, QueueDefaults

STALLED_REASON_FIELD = DEAD_PREFIX + b"reason"
STALLED = DeadReason.STALLED.value.encode()

if TYPE_CHECKING:
    from .producer import JobSpec, Producer


@dataclass(frozen=True, slots=True)
class KeyOrder:
    """Which keys of a queue are held in order: none, every key (``prefixes=None``), or the
    keys that start with one of ``prefixes``. Decided where jobs are added: every producer of
    a queue must use the same one (a job added unordered is not held behind its key)."""

    enabled: bool
    prefixes: tuple[str, ...] | None = None

    def applies(self, key: str | None) -> bool:
        """Whether a job added with ``key`` is held in order behind the earlier ones."""
        if key is None or not self.enabled:
            return False
        return self.prefixes is None or key.startswith(self.prefixes)

    @classmethod
    def of(cls, ordered: bool | Iterable[str] | None, defaults: QueueDefaults) -> KeyOrder:
        """From a ``Queue(ordered=...)`` argument (None: the settings ``queue.ordered`` and
        ``queue.ordered_prefixes``): ``True`` every key, ``False`` none, a tuple of prefixes
        the keys starting with one of them. ValueError for anything else."""
        if ordered is None:
            if defaults.ordered_prefixes:
                return cls(True, tuple(defaults.ordered_prefixes))
            return cls(defaults.ordered)
        if isinstance(ordered, bool):
            return cls(ordered)
        if isinstance(ordered, (str, bytes)) or not isinstance(ordered, Iterable):
            raise ValueError(f"ordered takes True, False or a tuple of key prefixes such as "
                             f"ordered=('pay_',), not {ordered!r}")
        prefixes = tuple(ordered)
        return cls(True, check_prefixes(prefixes))


def check_prefixes(prefixes: Sequence[object]) -> tuple[str, ...]:
    """``prefixes`` if they are ordering key prefixes (non-empty strings, at least one), else
    ValueError with a one-line reason."""
    if not prefixes:
        raise ValueError("an empty list of ordered key prefixes orders no key: "
                         "pass ordered=False")
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"an ordered key prefix must be a non-empty string, not {prefix!r}"
                             " (ordered=True orders every key)")
    return tuple(str(prefix) for prefix in prefixes)


def ordered_add_command(queue: Producer, specs: Sequence[JobSpec],
                        carrier: dict[str, str]) -> scripts.Command:
    """One ``add_ordered`` call for ``specs`` (every one with a key) on ``queue``'s keys."""
    keys = queue.keys
    now = int(time.time() * 1000)
    settings = queue.settings
    max_bytes = settings.queue.max_payload_bytes
    extra: dict[str, int] = {}

    def index(key: str) -> int:
        return extra.setdefault(key, len(extra) + 1)

    args: list[Any] = [now, len(keys.streams), scripts.flag(settings.queue.emit_added),
                       settings.queue.events_maxlen, int(settings.queue.dedup_ttl * 1000)]
    for spec in specs:  # checked as every add is (streamflow.addcheck)
        check_name(spec.name)
        if spec.job_id is not None:
            check_id(spec.job_id)
        assert spec.key is not None
        level = queue.level_index(spec.priority)
        data = encode_payload(spec.data, max_bytes)
        job_id = spec.job_id or os.urandom(10).hex()
        track = spec.track or spec.job_id is not None
        options_wire(spec.attempts, spec.backoff, spec.timeout, track, spec.keep_result)
        options = JobOptions(spec.attempts, spec.backoff, None if spec.timeout is None
                             else float(spec.timeout), track, spec.keep_result)
        delay = delay_ms(spec.delay) if spec.delay is not None else 0
        due = now + delay if delay else 0
        fields = [*envelope_fields(spec.name, data, job_id=job_id, enqueued_ms=now,
                                   options=options, traceparent=carrier.get("traceparent"),
                                   tracestate=carrier.get("tracestate")), F_KEY, spec.key]
        dedup = 1 if spec.job_id is not None else 0  # caller-given: deduplicated
        status = index(keys.status(job_id)) if options.track else 0
        args += [level, due, dedup, status, index(keys.held(spec.key)), job_id, spec.key,
                 delayed_record(level, fields), spec.name, len(fields), *fields]
    return scripts.ADD_ORDERED.command(
        [keys.keylocks, keys.delayed, keys.jobs, keys.events, *keys.streams, *extra], args)


async def send_ordered(queue: Producer, commands: list[scripts.Command],
                       durability: Durability) -> list[str | None]:
    """Send ``add_ordered`` calls of one partition in one pipeline (in order: a key's jobs
    take its lock in the order given), then WAIT for a replica with ``"replicated"``; the
    ids."""
    return job_ids(await send_writes(queue.client, commands,
                                     replicated=durability == "replicated",
                                     timeout_s=queue.settings.queue.replicated_timeout))


async def release_stalled(client: Any, keys: QueueKeys, dead: int, emit: str,
                          events_maxlen: int) -> None:
    """Release the keys of jobs the reclaimer just dead-lettered as ``stalled`` (it reports only
    how many): read back the newest dead letters. A release of a job that no longer holds its
    key changes nothing, so reading a few more than ``dead`` is harmless."""
    entries = await client.xrevrange(keys.dead, count=dead + 50)
    releases = [(fields[F_KEY], fields[F_ID].decode()) for _, fields in entries
                if fields.get(STALLED_REASON_FIELD) == STALLED and F_KEY in fields
                and F_ID in fields]
    if releases:
        [result] = await scripts.pipeline(client, [release_command(keys, releases, emit,
                                                                   events_maxlen)])
        if isinstance(result, Exception):
            raise result


def release_command(keys: QueueKeys, releases: Sequence[tuple[bytes, str]],
                    emit: str, events_maxlen: int) -> scripts.Command:
    """One ``release_keys`` call: ``releases`` are (key, id of the job that ended)."""
    held: dict[str, int] = {}
    args: list[Any] = [int(time.time() * 1000), len(keys.streams), emit, events_maxlen]
    for raw_key, job_id in releases:
        key = raw_key.decode()
        args += [key, job_id, held.setdefault(keys.held(key), len(held) + 1)]
    return scripts.RELEASE_KEYS.command(
        [keys.keylocks, keys.delayed, keys.jobs, keys.events, *keys.streams, *held], args)
