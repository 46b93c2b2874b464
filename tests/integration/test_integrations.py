"""Framework integrations on a real Redis: the Starlette/FastAPI lifespan (through the FastAPI
example and its TestClient), `SyncQueue`, and the Django example through Django's test client."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples import fastapi_webhook
from streamflow import Queue, StreamflowSettings, Worker
from streamflow.integrations.starlette import get_queue, queue_lifespan
from streamflow.integrations.sync import SyncQueue
from tests.support import fast_settings, running, wait_until


def _process(redis_url: str, queue: str, job_id: str) -> None:
    """Run the example's worker until ``job_id`` completed."""

    async def go() -> None:
        worker = Worker(queue, fastapi_webhook.router, settings=fast_settings(redis_url))
        async with Queue(queue, url=redis_url) as q, running(worker):

            async def completed() -> bool:
                info = await q.get_job(job_id)
                return info is not None and info["state"] == "completed"

            await wait_until(completed)

    anyio.run(go)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------- FastAPI / Starlette


def test_fastapi_example_enqueues_each_webhook_once_and_reports_its_state(
        redis_url: str, queue_name: str) -> None:
    app = fastapi_webhook.create_app(queue_name, url=redis_url)
    hook = {"id": "evt_1", "event": "payment.captured", "payload": {"amount": 500}}
    with TestClient(app) as client:
        first = client.post("/webhooks", json=hook)
        assert first.status_code == 202 and first.json() == {"id": "evt_1", "duplicate": False}
        for _ in range(3):  # the provider re-delivers
            assert client.post("/webhooks", json=hook).json()["duplicate"] is True
        assert client.post("/webhooks", json={"id": "evt_2", "event": "Bad"}).status_code == 422
        assert client.get("/webhooks/evt_1").json()["state"] == "waiting"
        assert client.get("/webhooks/evt_404").status_code == 404

        _process(redis_url, queue_name, "evt_1")
        assert client.get("/webhooks/evt_1").json() == {
            "id": "evt_1", "state": "completed", "result": {"amount": 500}}
    high = redis.Redis.from_url(redis_url).xlen(Queue(queue_name, url=redis_url).keys.level("high"))
    assert high <= 1  # one entry for five deliveries (0 once the janitor trimmed it)


def test_lifespan_closes_the_queue_at_shutdown_and_fails_startup_without_redis(
        redis_url: str, queue_name: str) -> None:
    seen: list[Queue] = []

    async def endpoint(request: Request) -> JSONResponse:
        seen.append(get_queue(request))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/", endpoint)],
                    lifespan=queue_lifespan(queue_name, url=redis_url))
    with TestClient(app) as client:
        client.get("/")
        client.get("/")
    assert len(seen) == 2 and seen[0] is seen[1] and seen[0]._client is None  # closed

    settings = StreamflowSettings.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    settings.redis.retry_attempts = 0
    down = Starlette(lifespan=queue_lifespan(queue_name, settings=settings))
    with pytest.raises(redis.ConnectionError), TestClient(down):
        pass
    lazy = Starlette(lifespan=queue_lifespan(queue_name, settings=settings, check=False))
    with TestClient(lazy):
        pass  # nothing connects before the first request


def test_get_queue_without_the_lifespan_is_a_clear_error() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        get_queue(request)
        return JSONResponse({})

    with TestClient(Starlette(routes=[Route("/", endpoint)])) as client, \
            pytest.raises(RuntimeError, match="lifespan=queue_lifespan"):
        client.get("/")


# ----------------------------------------------------------------------------------- SyncQueue


def _loop_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"streamflow-sync-{name}"]


def test_sync_queue_adds_from_many_threads_on_one_loop_and_stops_it_on_close(
        redis_url: str, queue_name: str) -> None:
    payments = SyncQueue(queue_name, url=redis_url)
    results: list[str | None] = []

    def add(n: int) -> None:
        results.append(payments.add("payment.captured", {"n": n}, job_id=f"evt_{n % 10}"))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40 and sorted(r for r in results if r) == [f"evt_{n}" for n in range(10)]
    assert payments.add_bulk([("report.daily", {}), ("report.daily", {})]) != [None, None]
    info = payments.get_job("evt_3")
    assert info is not None and info["state"] == "waiting"
    assert len(_loop_threads(queue_name)) == 1

    payments.close()
    for thread in _loop_threads(queue_name):
        thread.join(10)
    assert _loop_threads(queue_name) == []
    assert payments.add("payment.captured", {}, job_id="evt_after_close") == "evt_after_close"
    payments.close()


def test_sync_queue_called_from_its_own_loop_raises_instead_of_deadlocking(
        redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, url=redis_url) as payments:

        async def nested() -> str | None:
            return payments.add("payment.captured", {})

        assert payments._loop is not None
        future = asyncio.run_coroutine_threadsafe(nested(), payments._loop)
        with pytest.raises(RuntimeError, match="its own event loop"):
            future.result(30)


def _add_in_child(payments: SyncQueue, job_id: str) -> None:
    os._exit(0 if payments.add("payment.captured", {}, job_id=job_id) == job_id else 1)


def test_sync_queue_used_before_a_fork_works_in_the_child(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, url=redis_url) as payments:
        payments.ping()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with a running thread
            child = multiprocessing.get_context("fork").Process(
                target=_add_in_child, args=(payments, "evt_child"))
            child.start()
        child.join(30)
        assert child.exitcode == 0
        assert payments.add("payment.captured", {}, job_id="evt_child") is None  # was added


# -------------------------------------------------------------------------------------- Django


@pytest.fixture
def django_client(redis_url: str, queue_name: str) -> Iterator[Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_webhook.settings")
    import django
    from django.test import Client
    from django.test.utils import override_settings

    from examples.django_webhook import views

    django.setup()
    views.webhook_queue.cache_clear()
    with override_settings(STREAMFLOW_QUEUE=queue_name, STREAMFLOW_REDIS_URL=redis_url):
        yield Client()
        views.webhook_queue().close()
    views.webhook_queue.cache_clear()


def test_django_example_enqueues_each_webhook_once(
        django_client: Any, redis_url: str, queue_name: str) -> None:
    hook = {"id": "evt_1", "event": "payment.captured", "payload": {"amount": 500}}
    first = django_client.post("/webhooks", hook, content_type="application/json")
    assert first.status_code == 202 and first.json() == {"id": "evt_1", "duplicate": False}
    again = django_client.post("/webhooks", hook, content_type="application/json")
    assert again.json()["duplicate"] is True
    assert django_client.post("/webhooks", "nope", content_type="text/plain").status_code == 400
    assert django_client.get("/webhooks").status_code == 405

    async def state() -> Any:
        async with Queue(queue_name, url=redis_url) as q:
            return await q.get_job("evt_1")

    info = anyio.run(state)
    assert info is not None and info["state"] == "waiting" and info["name"] == "payment.captured"
