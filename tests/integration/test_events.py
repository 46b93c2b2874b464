"""QueueEvents: a job's whole life in order, callbacks by name, resuming without gaps."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from streamflow import Queue, QueueEvents, Worker
from streamflow.connection import create_client
from streamflow.events import QueueEvent
from streamflow.job import Job, JobOptions
from streamflow.keys import QueueKeys
from streamflow.progress import progress_reporter, report_progress
from streamflow.settings import StreamflowSettings
from tests.otel_worker import router
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("level", "on_add"), [("all", True), ("outcomes", False)])
async def test_every_event_of_a_jobs_life_in_order(redis_url: str, queue_name: str, level: str,
                                                   on_add: bool) -> None:
    # the default ("outcomes") writes every event but the add's added/delayed one per job
    settings = fast_settings(redis_url, attempts=2)
    if level != "outcomes":
        settings.queue.events = level  # type: ignore[assignment]
    else:
        assert settings.queue.events == "outcomes"  # the default
    worker = Worker(queue_name, router, settings=settings, concurrency=2)
    seen: list[QueueEvent] = []
    async with Queue(queue_name, settings=settings) as q, \
            QueueEvents(queue_name, settings=settings, block_ms=100) as events:
        async with running(worker):
            flaky = await q.add("flaky", job_id="f1")
            boom = await q.add("boom", job_id="b1", delay=0.05)
            with anyio.fail_after(15):
                async for event in events:
                    seen.append(event)
                    if [e.name for e in seen if e.job_id == boom][-1:] == ["dead"] and \
                            [e.name for e in seen if e.job_id == flaky][-1:] == ["completed"]:
                        break
    assert [e.name for e in seen if e.job_id == flaky] == [
        *(["added"] if on_add else []), "retrying", "waiting", "completed"]
    assert [e.name for e in seen if e.job_id == boom] == [
        *(["delayed"] if on_add else []), "waiting", "retrying", "waiting", "dead"]
    ids = [e.id for e in seen]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    retrying = next(e for e in seen if e.name == "retrying" and e.job_id == flaky)
    assert "first attempt fails" in str(retrying.fields)


async def test_callbacks_by_event_name(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, events="all")
    completed: list[str | None] = []
    everything: list[str] = []

    async def on_completed(event: QueueEvent) -> None:
        completed.append(event.job_id)

    def broken(event: QueueEvent) -> None:
        raise RuntimeError("a callback bug must not stop the others")

    worker = Worker(queue_name, router, settings=settings, concurrency=2)
    async with Queue(queue_name, settings=settings) as q, \
            QueueEvents(queue_name, settings=settings, block_ms=100) as events:
        events.on("completed", on_completed)
        events.on("added", broken)
        events.on("*", lambda e: everything.append(e.name))
        async with running(worker), anyio.create_task_group() as tg:
            tg.start_soon(events.run)
            await q.add("ok", job_id="j1")
            await q.add("ok", job_id="j2")
            await wait_until(lambda: len(completed) == 2)
            tg.cancel_scope.cancel()
    assert completed == ["j1", "j2"]
    assert everything.count("added") == 2 and everything.count("completed") == 2


async def _nonempty(items: Any) -> bool:
    return bool(await items)


async def _flood(q: Queue, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await q.add("ok", job_id=f"j{i}")


@pytest.mark.parametrize("client_retries", [0, 3], ids=["own-loop", "client-retry"])
async def test_resumes_after_the_connection_is_killed_without_gaps(
        redis_url: str, queue_name: str, client_retries: int) -> None:
    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.events = "all"  # events of every add
    settings.redis.retry_attempts = client_retries
    received: list[QueueEvent] = []
    reader_name = f"events-reader-{queue_name}"
    reader = create_client(settings.redis, max_connections=4, client_name=reader_name)
    async with Queue(queue_name, settings=settings) as q, \
            QueueEvents(queue_name, settings=settings, block_ms=200, client=reader) as events:

        async def follow() -> None:
            async for event in events:
                received.append(event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await _flood(q, 30)
            await wait_until(lambda: len(received) >= 10)
            for round_ in range(3):  # kill it while blocked, and while events keep coming
                async def reader_ids() -> list[str]:
                    return [c["id"] for c in await q.client.client_list()
                            if c.get("name") == reader_name]

                await wait_until(lambda: _nonempty(reader_ids()))
                for client_id in await reader_ids():
                    await q.client.client_kill_filter(_id=client_id)
                await _flood(q, 20, start=100 + 20 * round_)  # fresh ids: none refused
            await wait_until(lambda: len(received) == 90)
            tg.cancel_scope.cancel()
        stored = await q.client.xrange(q.keys.events)
    await reader.aclose()
    assert [e.id for e in received] == [entry_id.decode() for entry_id, _ in stored]


async def test_reopening_with_the_last_id_loses_nothing(redis_url: str,
                                                        queue_name: str) -> None:
    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.events = "all"  # events of every add
    async with Queue(queue_name, settings=settings) as q:
        await _flood(q, 5)
        async with QueueEvents(queue_name, settings=settings, since="0") as events:
            first = [e async for e in _take(events, 3)]
            last_id = events.last_id
        await _flood(q, 5, start=5)
        async with QueueEvents(queue_name, settings=settings, since=last_id) as events:
            rest = [e async for e in _take(events, 7)]
            assert await events.read(block_ms=None) == []
    assert [e.job_id for e in first + rest] == [f"j{i}" for i in range(10)]


async def test_breaking_out_of_a_batch_and_iterating_again_loses_nothing(
        redis_url: str, queue_name: str) -> None:
    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.events = "all"  # events of every add
    async with Queue(queue_name, settings=settings) as q:
        async with QueueEvents(queue_name, settings=settings) as events:  # "$": only new ones
            await _flood(q, 6)
            got = [e.job_id async for e in _take(events, 2)]
            got += [e.job_id async for e in _take(events, 4)]
    assert got == [f"j{i}" for i in range(6)]


async def _take(events: QueueEvents, count: int) -> Any:
    if count == 0:
        return
    with anyio.fail_after(5):
        async for event in events:
            yield event
            count -= 1
            if count == 0:
                return


async def test_progress_is_stored_and_sent_as_an_event(redis_url: str, queue_name: str) -> None:
    settings = StreamflowSettings.from_url(redis_url)  # progress is an outcome: the default
    keys = QueueKeys(queue_name, settings.prefix, tuple(settings.levels))
    tracked = Job(id="p1", name="report", data=None, attempt=1, enqueued_ms=0,
                  queue=queue_name, level="normal", entry_id="1-0",
                  options=JobOptions(track=True))
    untracked = Job(id="p2", name="report", data=None, attempt=1, enqueued_ms=0,
                    queue=queue_name, level="normal", entry_id="2-0")
    async with Queue(queue_name, settings=settings) as q, \
            QueueEvents(queue_name, settings=settings) as events:
        reporter = progress_reporter(q.client, keys, settings.queue)
        tracked._progress = reporter
        await tracked.progress(50)
        await tracked.progress({"done": 3, "of": 4})
        await report_progress(q.client, keys, untracked, 10, emit=True)
        await report_progress(q.client, keys, untracked, 20, emit=False)
        with pytest.raises(TypeError):
            await report_progress(q.client, keys, untracked, "half", emit=True)
        got = await events.read(block_ms=None)
        status = await q.client.hgetall(keys.status("p1"))
        ttl = await q.client.pttl(keys.status("p1"))
        assert not await q.client.exists(keys.status("p2"))
    assert [(e.name, e.job_id, e.fields["p"]) for e in got] == [
        ("progress", "p1", "50"), ("progress", "p1", '{"done":3,"of":4}'),
        ("progress", "p2", "10")]
    assert status[b"progress"] == b'{"done":3,"of":4}'
    assert 0 < ttl <= settings.queue.dedup_ttl * 1000
