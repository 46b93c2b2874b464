"""Repeatable jobs: cron across DST, racing schedulers, missed windows, limits, removal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

from streamflow import Job, Queue, Worker
from streamflow.repeat import RepeatSpec, schedule_repeats
from streamflow.scheduler import promote_due
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio
NY = ZoneInfo("America/New_York")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def local(ms_value: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms_value / 1000, zone)


def fires(spec: RepeatSpec, start: datetime, count: int) -> list[datetime]:
    out, at = [], ms(start)
    for _ in range(count):
        at = spec.next_fire(at)
        out.append(local(at, ZoneInfo(spec.tz)))
    return out


def test_daily_cron_neither_skips_nor_doubles_across_dst() -> None:
    nine = RepeatSpec(key="r", name="report", cron="0 9 * * *", tz="America/New_York")
    spring = fires(nine, datetime(2026, 3, 6, 12, tzinfo=NY), 4)
    assert [(d.day, d.hour, d.minute) for d in spring] == [(7, 9, 0), (8, 9, 0), (9, 9, 0),
                                                          (10, 9, 0)]
    fall = fires(nine, datetime(2026, 10, 30, 12, tzinfo=NY), 4)
    assert [(d.day, d.hour) for d in fall] == [(31, 9), (1, 9), (2, 9), (3, 9)]
    # 01:30 happens twice on 2026-11-01 (fall back): one tick, not two
    early = RepeatSpec(key="e", name="x", cron="30 1 * * *", tz="America/New_York")
    days = [d.day for d in fires(early, datetime(2026, 10, 31, 12, tzinfo=NY), 3)]
    assert days == [1, 2, 3]
    # 02:30 does not exist on 2026-03-08 (spring forward): still one tick that day
    gap = RepeatSpec(key="g", name="x", cron="30 2 * * *", tz="America/New_York")
    days = [d.day for d in fires(gap, datetime(2026, 3, 6, 12, tzinfo=NY), 3)]
    assert days == [7, 8, 9]


def test_kolkata_daily_report_at_nine_local() -> None:
    spec = RepeatSpec(key="d", name="daily_report", cron="0 9 * * *", tz="Asia/Kolkata")
    nxt = spec.next_fire(ms(datetime(2026, 11, 29, 0, 0, tzinfo=UTC)))
    assert local(nxt, ZoneInfo("Asia/Kolkata")).replace(tzinfo=None) == datetime(2026, 11, 29,
                                                                                 9, 0)
    assert datetime.fromtimestamp(nxt / 1000, UTC).hour == 3  # 09:00 IST = 03:30 UTC


async def _tick_jobs(q: Queue) -> list[str]:
    ids = [m.decode() for m in await q.client.zrange(q.keys.delayed, 0, -1)]
    for stream in q.keys.streams:
        ids += [f[b"i"].decode() for _, f in await q.client.xrange(stream)]
    return sorted(ids)


async def _schedule(q: Queue, now: int) -> int:
    return await schedule_repeats(q.client, q.keys, level_of={"high": 0, "normal": 1, "low": 2},
                                  default_level=1, dedup_ttl_ms=86_400_000, now_ms=now)


async def test_racing_schedulers_make_one_job_per_tick(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        key = await q.repeat("sync", {"a": 1}, every=timedelta(minutes=1),
                             start=datetime(2026, 1, 1, tzinfo=UTC))
        base = ms(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
        for minute in range(10):  # ten minutes of simulated time, eight schedulers each step
            now = base + minute * 60_000
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(_schedule, q, now)
            await promote_due(q.client, q.keys, now_ms=now)
        ticks = await _tick_jobs(q)
        expected = [f"repeat:{key}:{base + 30_000 + m * 60_000}" for m in range(10)]
        assert ticks == expected  # 00:01 .. 00:10, each exactly once


async def test_a_missed_window_fires_once_not_a_storm(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        await q.repeat("daily", {}, cron="0 9 * * *", tz="Asia/Kolkata", key="daily")
        day0 = ms(datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
        assert await _schedule(q, day0) == 1
        # every worker down for five days (Nov 1 09:00 IST is the last tick they scheduled)
        later = day0 + 5 * 86_400_000 + 3600_000  # Nov 6, 06:30 IST
        assert [await _schedule(q, later) for _ in range(3)] == [1, 1, 0]
        fired = [local(int(t.rsplit(":", 1)[1]), ZoneInfo("Asia/Kolkata"))
                 for t in await _tick_jobs(q)]
        # Nov 1 (before the outage), Nov 5 (the missed window, once, due now), Nov 6 (next)
        assert sorted((d.day, d.hour) for d in fired) == [(1, 9), (5, 9), (6, 9)]
        [info] = await q.repeats()
        assert info["ticks"] == 3


async def test_limit_end_and_removal(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        t0 = ms(datetime(2026, 1, 1, tzinfo=UTC))
        await q.repeat("ping", {}, every=10, key="limited", limit=2,
                       start=datetime(2026, 1, 1, tzinfo=UTC))
        for step in range(5):
            await _schedule(q, t0 + step * 10_000 + 1)
        assert len(await _tick_jobs(q)) == 2
        await q.repeat("pong", {}, every=10, key="gone", start=datetime(2026, 1, 1, tzinfo=UTC))
        await _schedule(q, t0 + 1)
        assert await q.remove_repeat("gone") is True
        assert [r["key"] for r in await q.repeats()] == ["limited"]
        assert all("gone" not in t for t in await _tick_jobs(q))


async def test_workers_run_repeat_ticks(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    runs: list[str] = []

    async def handler(job: Job) -> None:
        runs.append(job.id)

    async with Queue(queue_name, settings=settings) as q:
        await q.repeat("heartbeat", {}, every=0.3, key="hb")
        workers = [Worker(queue_name, handler, settings=settings) for _ in range(3)]
        async with running(*workers):
            await wait_until(lambda: len(runs) >= 4, timeout=15)
        assert len(runs) == len(set(runs))
        assert all(r.startswith("repeat:hb:") for r in runs)


async def test_bad_schedules_are_refused(redis_url: str, queue_name: str) -> None:
    from streamflow.errors import ConfigurationError

    async with Queue(queue_name, url=redis_url) as q:
        with pytest.raises(ConfigurationError):
            await q.repeat("x", cron="61 * * * *")
        with pytest.raises(ConfigurationError):
            await q.repeat("x", cron="0 9 * * *", tz="Mars/Olympus")
        with pytest.raises(ConfigurationError):
            await q.repeat("x")
        assert await q.repeats() == []
