"""Where handlers run: sync handlers on capped daemon threads; ``isolation="process"`` in child
processes, with results, errors and job signals crossing the boundary; error texts masked."""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from typer.testing import CliRunner

from streamflow import Job, Queue, Router, Worker
from streamflow.cli import app
from streamflow.errors import ConfigurationError
from tests.poison_apps import router as poison_router
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def _dead(q: Queue, n: int = 1) -> bool:
    return int((await q.counts())["dead"]) >= n


async def test_error_texts_in_dead_letters_and_events_have_passwords_masked(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    url = "redis://user:hunter2@db.internal:6379/0"

    async def handler(job: Job) -> None:
        raise ConnectionError(f"cannot reach {url}")

    async with Queue(queue_name, settings=settings) as q:
        await q.add("call", {}, attempts=2)
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: _dead(q))
        [dead] = await q.dead()
        assert dead["error"] == "ConnectionError: cannot reach redis://user:***@db.internal:6379/0"
        assert "hunter2" not in dead["traceback"]
        assert "redis://user:***@db.internal" in dead["traceback"]
        events = [e for _, e in await q.client.xrange(q.keys.events)]
        errors = [e[b"err"].decode() for e in events if b"err" in e]
        assert errors and all("hunter2" not in text and "***" in text for text in errors)


def _abandoned(reader: InMemoryMetricReader, queue: str) -> float:
    data = reader.get_metrics_data()
    return float(sum(
        point.value
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics for metric in scope.metrics
        if metric.name == "streamflow.worker.abandoned_threads"
        for point in metric.data.data_points if (point.attributes or {}).get("queue") == queue))


async def test_abandoned_handler_threads_are_counted_and_capped(
        redis_url: str, queue_name: str, reader: InMemoryMetricReader) -> None:
    settings = fast_settings(redis_url, timeout=0.2, attempts=1)
    settings.worker.max_abandoned_threads = 2
    release = threading.Event()

    def stuck(job: Job) -> None:
        release.wait(60)

    worker = Worker(queue_name, stuck, settings=settings, concurrency=4)
    try:
        async with Queue(queue_name, settings=settings) as q:
            await q.add_bulk([("stuck", {})] * 2)
            with anyio.fail_after(30):
                await worker.run(handle_signals=False)  # it stops by itself at the cap
            assert worker.stopped
            assert worker._runner.threads.abandoned == 2
            assert _abandoned(reader, queue_name) == 2
            assert (await q.counts())["dead"] == 2
    finally:
        release.set()
    await wait_until(lambda: worker._runner.threads.abandoned == 0)  # back when they end
    assert _abandoned(reader, queue_name) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_process_isolation_carries_results_errors_and_signals(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, attempts=2)
    settings.worker.isolation = "process"
    settings.worker.isolation_processes = 2
    worker = Worker(queue_name, poison_router, settings=settings, concurrency=2)
    async with Queue(queue_name, settings=settings) as q:
        await q.add("echo", {"amount": 5}, job_id="echo")
        await q.add("echo_async", [1, 2], job_id="echo_async")
        await q.add("retry_once", {}, job_id="retry_once")
        await q.add("discard", {"url": "https://u:pw@psp.example/x"}, job_id="discard")
        await q.add("fail", {"n": 1}, job_id="fail")
        async with running(worker):
            await wait_until(lambda: _dead(q, 2))
            await wait_until(lambda: _done(q, 3))
        results = {fields[b"i"].decode(): fields[b"r"] for _, fields in
                   await q.client.xrange(q.keys.done)}
        assert results[b"echo".decode()].startswith(b'{"data":{"amount":5},"attempt":1,"pid":')
        assert str(os.getpid()).encode() not in results["echo"]
        assert results["retry_once"] == b"2"
        letters = {d["job_id"]: d for d in await q.dead()}
        assert (letters["discard"]["reason"], letters["discard"]["error"]) == (
            "discarded", "card declined, see https://u:***@psp.example/x")
        assert (letters["fail"]["reason"], letters["fail"]["error"]) == (
            "failed", "ValueError: bad input {'n': 1}")
        assert 'raise ValueError(f"bad input {job.data}")' in letters["fail"]["traceback"]


async def test_a_deadline_under_process_isolation_kills_the_child(
        redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_REDIS_URL", redis_url)  # the handler records its pid there
    settings = fast_settings(redis_url, attempts=1, timeout=0.5)
    settings.worker.isolation = "process"
    settings.worker.isolation_processes = 1
    async with Queue(queue_name, settings=settings) as q:
        await q.add("spin", {}, job_id="spin")
        await q.add("echo", {}, job_id="after")
        async with running(Worker(queue_name, poison_router, settings=settings)):
            await wait_until(lambda: _dead(q))
            await wait_until(lambda: _done(q, 1))
        [letter] = await q.dead()
        assert (letter["reason"], letter["error"]) == (
            "failed", "timeout: the handler ran longer than 0.5s")
        [raw] = await q.client.lrange(f"{queue_name}:runs", 0, -1)
        spun_in = int(raw.decode().rpartition(":")[2])
        await wait_until(lambda: not _pid_alive(spun_in))


async def _done(q: Queue, n: int) -> bool:
    return len(await q.client.xrange(q.keys.done)) >= n


def test_process_isolation_refuses_handlers_a_child_cannot_import(redis_url: str) -> None:
    settings = fast_settings(redis_url)
    settings.worker.isolation = "process"
    router = Router()

    @router.handler("nested")
    def nested(job: Job) -> Any:
        return None

    with pytest.raises(ConfigurationError, match="not importable as module:name"):
        Worker("q", router, settings=settings)
    with pytest.raises(ConfigurationError, match="not importable"):
        Worker("q", lambda job: None, settings=settings)


def test_cli_isolation_takes_none_or_process(redis_url: str) -> None:
    result = CliRunner().invoke(app, ["--redis-url", redis_url, "worker", "q", "--app",
                                      "tests.poison_apps:router", "--isolation", "threads"])
    assert result.exit_code == 2
    assert "threads" in result.output
