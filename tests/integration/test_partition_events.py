"""Events and metrics of a partitioned queue on one Redis: QueueEvents reads every partition's
events stream (or one), resumes from a composite cursor, and the stored per-minute metrics and
OTel metrics sum the partitions (or label them)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from streamflow import Discard, Job, JobSpec, Queue, QueueEvents, Worker, metrics
from streamflow.errors import ConfigurationError
from streamflow.events import QueueEvent, id_key, parse_cursor
from streamflow.partitions import partition_for
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio

PARTITIONS = 4


def keyed(count: int, start: int = 0) -> list[JobSpec]:
    """Jobs with ids and keys spread over every partition."""
    return [JobSpec("pay", i, job_id=f"evt_{i}", key=f"pay_{i}")
            for i in range(start, start + count)]


async def stored_events(q: Queue) -> list[tuple[int, str]]:
    """``(partition, entry id)`` of every event the queue's partitions hold."""
    out = []
    for i, keys in enumerate(q.partition_keys):
        out += [(i, entry.decode()) for entry, _ in await q.client.xrange(keys.events)]
    return out


async def take(events: QueueEvents, count: int) -> list[QueueEvent]:
    got: list[QueueEvent] = []
    if count == 0:
        return got
    with anyio.fail_after(10):
        async for event in events:
            got.append(event)
            if len(got) == count:
                break
    return got


def in_stream_order(events: list[QueueEvent]) -> bool:
    """Whether each partition's events came in its stream order."""
    last: dict[int | None, tuple[int, int]] = {}
    for event in events:
        if last.get(event.partition, (-1, -1)) >= id_key(event.id):
            return False
        last[event.partition] = id_key(event.id)
    return True


async def test_events_of_every_partition_arrive(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, events="all")
    seen: list[QueueEvent] = []

    async def handler(job: Job) -> None:
        if job.data % 10 == 0:
            raise Discard("bad")

    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q, \
            QueueEvents(queue_name, settings=settings, block_ms=100) as events:
        await q.add_bulk(keyed(40))
        worker = Worker(queue_name, handler, settings=settings, concurrency=8)
        async with running(worker):
            with anyio.fail_after(15):
                async for event in events:
                    seen.append(event)
                    if sum(e.name in ("completed", "dead") for e in seen) == 40:
                        break
        assert len(events.streams) == PARTITIONS
        finished = {e.job_id: (e.name, e.partition) for e in seen
                    if e.name in ("completed", "dead")}
        assert finished == {f"evt_{i}": ("dead" if i % 10 == 0 else "completed",
                                         partition_for(f"pay_{i}", PARTITIONS))
                            for i in range(40)}
        assert {e.partition for e in seen} == set(range(PARTITIONS))
        assert in_stream_order(seen)
        assert sorted((e.partition, e.id) for e in seen) == sorted(await stored_events(q))


async def test_a_resumed_reader_misses_nothing_and_repeats_nothing(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, events="all")
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
        await q.add_bulk(keyed(30))
        got: list[QueueEvent] = []
        async with QueueEvents(queue_name, settings=settings, since="0") as events:
            got += await take(events, 7)
            got += await events.read(count=5)  # a read and an iteration share the position
            cursor = events.last_id
        assert len(cursor.split(",")) == PARTITIONS
        await q.add_bulk(keyed(30, start=30))
        for _ in range(3):  # reopen from the cursor each time, stop midway
            async with QueueEvents(queue_name, settings=settings, since=cursor) as events:
                got += await take(events, 11)
                cursor = events.last_id
        async with QueueEvents(queue_name, settings=settings, since=cursor) as events:
            got += await events.read(count=1000, block_ms=None)
            assert await events.read(block_ms=None) == []
        ids = [(e.partition, e.id) for e in got]
        assert len(ids) == len(set(ids)) == 60, "nothing twice, nothing missing"
        assert sorted(ids) == sorted(await stored_events(q))
        assert in_stream_order(got)
        assert {e.job_id for e in got} == {f"evt_{i}" for i in range(60)}


async def test_reading_starts_at_new_events_and_merges_by_time(redis_url: str,
                                                               queue_name: str) -> None:
    settings = fast_settings(redis_url, events="all")
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
        await q.add_bulk(keyed(8))
        async with QueueEvents(queue_name, settings=settings) as events:  # "$": only new ones
            assert await events.read(block_ms=None) == []
            for i in range(8, 16):  # one at a time: later adds have later ids
                await q.add("pay", i, job_id=f"evt_{i}", key=f"pay_{i}")
                await anyio.sleep(0.002)
            got = await events.read(count=100, block_ms=None)
        assert [e.job_id for e in got] == [f"evt_{i}" for i in range(8, 16)]
        assert len({e.partition for e in got}) > 1


async def test_one_partition_only(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, events="all")
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
        await q.add_bulk(keyed(40))
        target = partition_for("pay_0", PARTITIONS)
        async with QueueEvents(queue_name, settings=settings, since="0",
                               partition=target) as events:
            got = await events.read(count=1000, block_ms=None)
            assert "," not in events.last_id
        expected = [i for i in range(40) if partition_for(f"pay_{i}", PARTITIONS) == target]
        assert [e.job_id for e in got] == [f"evt_{i}" for i in expected]
        assert {e.partition for e in got} == {target}
        with pytest.raises(ConfigurationError, match="partition 4 does not exist"):
            async with QueueEvents(queue_name, settings=settings, partition=PARTITIONS):
                pass
        with pytest.raises(ValueError, match="2 positions; the queue has 4"):
            async with QueueEvents(queue_name, settings=settings, since="0-0,0-0"):
                pass


async def test_a_reader_opened_before_the_queue_uses_the_configured_count(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, events="all", partitions=PARTITIONS)
    async with QueueEvents(queue_name, settings=settings) as events:
        async with Queue(queue_name, settings=settings) as q:
            await q.add_bulk(keyed(12))
        got = await events.read(count=100, block_ms=1000)
        while len(got) < 12:
            got += await events.read(count=100, block_ms=1000)
    assert sorted(e.job_id or "" for e in got) == sorted(f"evt_{i}" for i in range(12))


def test_cursor_forms() -> None:
    assert parse_cursor("$", 3) == ["$", "$", "$"]
    assert parse_cursor("1700000000000-1", 2) == ["1700000000000-1"] * 2
    assert parse_cursor("1-0,0,$", 3) == ["1-0", "0", "$"]
    for bad in ("1-0,x", "1-0,,2-0", "abc"):
        with pytest.raises(ValueError):
            parse_cursor(bad, 2 if bad.count(",") == 1 else 3)


# -- metrics ---------------------------------------------------------------------------------


async def test_stored_metrics_sum_the_partitions(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, events="all", attempts=1, metrics_window=3600)

    async def handler(job: Job) -> None:
        if job.data % 5 == 0:
            raise Discard("no")

    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
        await q.add_bulk(keyed(60))
        worker = Worker(queue_name, handler, settings=settings, concurrency=8)
        async with running(worker):
            await wait_until(lambda: worker.processed + worker.failed == 60)
            await wait_until(lambda: _finished(q, 60))
        minutes = await q.metrics(since=600)
        assert sum(m.completed for m in minutes) == 48 == worker.processed
        assert sum(m.failed for m in minutes) == 12
        per_partition = Counter(partition_for(f"pay_{i}", PARTITIONS) for i in range(60))
        for i in range(PARTITIONS):
            own = await q.partition(i).metrics(since=600)
            assert sum(m.completed + m.failed for m in own) == per_partition[i]
        assert not await q.client.exists(q.keys.metrics_minute(minutes[-1].minute_ms))


async def _finished(q: Queue, total: int) -> bool:
    return sum(m.completed + m.failed for m in await q.metrics(since=600)) >= total


def points(reader: InMemoryMetricReader, name: str, queue: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [p for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics for metric in scope.metrics
            if metric.name == name for p in metric.data.data_points
            if (p.attributes or {}).get("queue") == queue]


@pytest.mark.parametrize("labelled", [False, True], ids=["summed", "labelled"])
async def test_otel_metrics_sum_or_label_the_partitions(
        redis_url: str, queue_name: str, reader: InMemoryMetricReader,
        monkeypatch: pytest.MonkeyPatch, labelled: bool) -> None:
    monkeypatch.setenv("STREAMFLOW_METRICS_PARTITION_LABEL", "1" if labelled else "0")
    settings = fast_settings(redis_url, events="all")
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
        await q.add_bulk(keyed(40))
        await q.add_bulk([JobSpec("later", i, key=f"pay_{i}", delay=600) for i in range(8)])
        worker = Worker(queue_name, lambda job: None, settings=settings, concurrency=8)
        async with running(worker):
            await wait_until(lambda: worker.processed == 40)
            await wait_until(lambda: bool(points(reader, "streamflow.queue.delayed",
                                                 queue_name)))
        completed = points(reader, "streamflow.jobs.completed", queue_name)
        assert sum(p.value for p in completed) == 40
        labels = [(p.attributes or {}).get("partition") for p in completed]
        delayed = points(reader, "streamflow.queue.delayed", queue_name)
        assert sum(p.value for p in delayed) == 8
        if labelled:
            per_partition = Counter(partition_for(f"pay_{i}", PARTITIONS) for i in range(40))
            assert Counter(labels) == Counter(str(i) for i in range(PARTITIONS))  # one name
            for i in range(PARTITIONS):
                assert sum(p.value for p in completed
                           if p.attributes["partition"] == str(i)) == per_partition[i]
            assert sorted(p.attributes["partition"] for p in delayed) == [
                str(i) for i in range(PARTITIONS)]
        else:
            assert labels == [None] and len(delayed) == 1


@pytest.mark.parametrize("labelled", [False, True], ids=["summed", "labelled"])
async def test_prometheus_text_of_a_partitioned_queue(
        redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch,
        labelled: bool) -> None:
    monkeypatch.setenv("STREAMFLOW_METRICS_PARTITION_LABEL", "1" if labelled else "0")
    found = metrics.prometheus_reader()
    assert found is not None
    prom_reader, text = found
    provider = MeterProvider(metric_readers=[prom_reader])
    metrics.use_meter_provider(provider)
    try:
        settings = fast_settings(redis_url, events="all")
        async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
            await q.add_bulk(keyed(30))
            worker = Worker(queue_name, lambda job: None, settings=settings, concurrency=8)
            async with running(worker):
                await wait_until(lambda: worker.processed == 30)
                await wait_until(lambda: _queue_lines(text(), queue_name,
                                                        "streamflow_queue_waiting") != [])
        exposition = text()
    finally:
        metrics.use_meter_provider(None)
        provider.shutdown()
    completed = _queue_lines(exposition, queue_name, "streamflow_jobs_completed_total")
    assert sum(float(line.rsplit(" ", 1)[1]) for line in completed) == 30
    waiting = _queue_lines(exposition, queue_name, "streamflow_queue_waiting")
    if labelled:
        assert {_label(line, "partition") for line in completed} == {
            str(partition_for(f"pay_{i}", PARTITIONS)) for i in range(30)}
        assert {_label(line, "partition") for line in waiting} == {
            str(i) for i in range(PARTITIONS)}
    else:
        assert all('partition="' not in line for line in completed + waiting)


def _queue_lines(exposition: bytes, queue: str, name: str) -> list[str]:
    return [line for line in exposition.decode().splitlines()
            if line.startswith(name) and f'queue="{queue}"' in line]


def _label(line: str, name: str) -> str:
    return line.split(f'{name}="', 1)[1].split('"', 1)[0]


async def test_on_one_redis_events_come_in_time_order_across_partitions(
        redis_url: str, queue_name: str) -> None:
    """One XREAD sees every partition at one instant, and a read keeps only the oldest
    ``count`` of what it got: across partitions the millisecond of the ids never goes back."""
    settings = fast_settings(redis_url, events="all")
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q:
        for i in range(60):
            await q.add("pay", i, job_id=f"evt_{i}", key=f"pay_{i}")
            if i % 7 == 0:
                await anyio.sleep(0.002)
        got: list[QueueEvent] = []
        async with QueueEvents(queue_name, settings=settings, since="0") as events:
            for count in (1, 3, 5, 2, 8):
                got += await events.read(count=count, block_ms=None)
            got += await take(events, 60 - len(got))
    millis = [id_key(e.id)[0] for e in got]
    assert millis == sorted(millis)
    assert sorted(e.job_id or "" for e in got) == sorted(f"evt_{i}" for i in range(60))


async def test_a_follower_resumes_every_partition_after_its_connection_is_killed(
        redis_url: str, queue_name: str) -> None:
    from streamflow import StreamflowSettings
    from streamflow.connection import create_client

    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.events = "all"  # events of every add
    settings.redis.retry_attempts = 0  # the follower's own loop resumes, not the client's
    received: list[QueueEvent] = []
    reader_name = f"events-reader-{queue_name}"
    reader = create_client(settings.redis, max_connections=4, client_name=reader_name)
    async with Queue(queue_name, settings=settings, partitions=PARTITIONS) as q, \
            QueueEvents(queue_name, settings=settings, block_ms=200, client=reader) as events:

        async def follow() -> None:
            async for event in events:
                received.append(event)

        async def reader_ids() -> list[str]:
            return [c["id"] for c in await q.client.client_list()
                    if c.get("name") == reader_name]

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await q.add_bulk(keyed(30))
            await wait_until(lambda: len(received) >= 10)
            for round_ in range(3):  # kill it while blocked, and while events keep coming
                await wait_until(lambda: _nonempty(reader_ids()))
                for client_id in await reader_ids():
                    await q.client.client_kill_filter(_id=client_id)
                await q.add_bulk(keyed(20, start=100 + 20 * round_))
            await wait_until(lambda: len(received) >= 90)
            tg.cancel_scope.cancel()
        stored = await stored_events(q)
    await reader.aclose()
    assert sorted((e.partition, e.id) for e in received) == sorted(stored)
    assert len({(e.partition, e.id) for e in received}) == 90
    assert in_stream_order(received)


async def _nonempty(items: Any) -> bool:
    return bool(await items)
