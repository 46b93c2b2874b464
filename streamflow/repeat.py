"""Repeatable jobs: cron or fixed-interval schedules whose ticks go through the delayed set.

Each tick is the job ``repeat:<key>:<fire ms>``; the state of a repeat (last tick scheduled and
how many) is compared-and-set in one script, so any number of workers scheduling at once add
each tick exactly once.

Missed ticks: when every worker was down past one or more fire times, the repeat fires ONCE for
the missed window (the latest missed fire time, due at once), then carries on with its schedule;
it never back-fills a storm of old ticks. Daylight saving time: schedules are computed in the
repeat's time zone; a wall-clock time that does not exist (spring forward) fires at the first
valid time after it, and one that occurs twice (fall back) fires only the first time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import CroniterBadCronError, croniter

from . import scripts
from .codec import delayed_record, encode_data, envelope_fields
from .errors import ConfigurationError
from .job import JobOptions
from .keys import QueueKeys


@dataclass(frozen=True, slots=True)
class RepeatSpec:
    """A repeatable job: what to add (name, data, options) and when (cron or every)."""

    key: str
    name: str
    data: Any = None
    cron: str | None = None
    tz: str = "UTC"
    every_ms: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int | None = None
    priority: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_ms is None):
            raise ConfigurationError("a repeat needs exactly one of cron= or every=")
        if self.every_ms is not None and self.every_ms <= 0:
            raise ConfigurationError("every must be positive")
        if self.cron is not None:
            try:
                croniter(self.cron)
            except (CroniterBadCronError, ValueError) as exc:
                raise ConfigurationError(f"bad cron expression {self.cron!r}: {exc}") from None
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"unknown time zone {self.tz!r}") from None
        if self.limit is not None and self.limit < 1:
            raise ConfigurationError("limit must be >= 1")

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> RepeatSpec:
        return cls(**orjson.loads(raw))

    def next_fire(self, after_ms: int) -> int:
        """The first fire time strictly after ``after_ms`` (and not before ``start_ms``)."""
        if self.start_ms is not None and after_ms < self.start_ms:
            after_ms = self.start_ms - 1
        if self.every_ms is not None:
            anchor = self.start_ms or 0
            return anchor + ((after_ms - anchor) // self.every_ms + 1) * self.every_ms
        zone = ZoneInfo(self.tz)
        previous = datetime.fromtimestamp(after_ms / 1000, zone)
        schedule = croniter(self.cron or "", previous)
        while True:
            candidate: datetime = schedule.get_next(datetime)
            # fall back: the same wall-clock time again an hour later is not a new tick
            if candidate.replace(tzinfo=None) != previous.replace(tzinfo=None):
                return int(candidate.timestamp() * 1000)

    def latest_fire(self, at_or_before_ms: int) -> int:
        """The last fire time at or before ``at_or_before_ms``."""
        if self.every_ms is not None:
            anchor = self.start_ms or 0
            return anchor + ((at_or_before_ms - anchor) // self.every_ms) * self.every_ms
        zone = ZoneInfo(self.tz)
        moment = datetime.fromtimestamp((at_or_before_ms + 1) / 1000, zone)
        fire: datetime = croniter(self.cron or "", moment).get_prev(datetime)
        return int(fire.timestamp() * 1000)


def tick_id(key: str, fire_ms: int) -> str:
    """The job id of one tick."""
    return f"repeat:{key}:{fire_ms}"


def _state(raw: bytes | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    last, _, count = raw.decode().partition(":")
    return int(last), int(count or 0)


async def schedule_repeats(client: Any, keys: QueueKeys, *, level_of: dict[str, int],
                           default_level: int, dedup_ttl_ms: int, emit: bool = True,
                           events_maxlen: int = 10_000, max_payload_bytes: int = 512 * 1024,
                           now_ms: int | None = None) -> int:
    """Schedule the next tick of every repeat that has none pending; returns how many.

    ``now_ms`` makes the clock injectable for tests.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.repeat)
    pipe.hgetall(keys.repeat_last)
    specs_raw, states_raw = await pipe.execute()
    scheduled = 0
    for raw_key, raw_spec in specs_raw.items():
        spec = RepeatSpec.from_json(raw_spec)
        state = _state(states_raw.get(raw_key))
        count = 0
        if state is not None:
            last, count = state
            if last > now or (spec.limit is not None and count >= spec.limit):
                continue
            fire = spec.next_fire(last)
        else:
            fire = spec.next_fire(now - 1)
        if fire <= now:
            fire = spec.latest_fire(now)  # missed while no worker ran: fire once, now
        if spec.end_ms is not None and fire > spec.end_ms:
            continue
        level = level_of.get(spec.priority or "", default_level)
        job_id = tick_id(spec.key, fire)
        fields = envelope_fields(spec.name, encode_data(spec.data, max_payload_bytes),
                                 job_id=job_id, enqueued_ms=fire,
                                 options=JobOptions.from_wire(spec.options))
        expected = states_raw.get(raw_key, b"").decode()
        done = await scripts.call(
            client, scripts.SCHEDULE_REPEAT,
            [keys.repeat_last, keys.delayed, keys.jobs, keys.events, keys.dedup(job_id)],
            [spec.key, expected, f"{fire}:{count + 1}", fire, job_id,
             delayed_record(level, fields), spec.name, dedup_ttl_ms, "1" if emit else "0",
             events_maxlen])
        scheduled += int(done)
    return scheduled


async def cancel_next_tick(client: Any, keys: QueueKeys, key: str) -> None:
    """Forget a repeat's state and remove its tick still waiting in the delayed set."""
    state = _state(await client.hget(keys.repeat_last, key))
    pipe = client.pipeline(transaction=False)
    if state is not None:
        job_id = tick_id(key, state[0])
        pipe.zrem(keys.delayed, job_id)
        pipe.hdel(keys.jobs, job_id)
    pipe.hdel(keys.repeat_last, key)
    await pipe.execute()
