"""The dashboard app over HTTP (Starlette's test client) on a real Redis: mounting under a
path, token, CSRF, read-only, discovery cache, and the command's refusals."""

from __future__ import annotations

import subprocess
import sys
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import pytest

pytest.importorskip("jinja2", reason="the dashboard extra is not installed")
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its test client
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient
from streamflow import Queue, StreamflowSettings
from streamflow.dashboard import DashboardConfig, create_app
from streamflow.dashboard.jobs_api import BROWSE

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function in a thread of its own (a Playwright session in the same
    pytest run keeps an event loop on the main thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn).result()


@pytest.fixture
def settings(redis_url: str) -> StreamflowSettings:
    return StreamflowSettings.from_url(redis_url, prefix=f"dt{uuid.uuid4().hex[:10]}")


def seed(settings: StreamflowSettings, queue: str, count: int = 3) -> None:
    async def go() -> None:
        async with Queue(queue, settings=settings) as q:
            await q.add_bulk([("noop", {"i": i}) for i in range(count)])

    run(go)


def paused(settings: StreamflowSettings, queue: str) -> bool:
    async def go() -> bool:
        async with Queue(queue, settings=settings) as q:
            return await q.is_paused()

    return run(go)


@pytest.fixture
def client(settings: StreamflowSettings, queue_name: str) -> Iterator[TestClient]:
    seed(settings, queue_name)
    with TestClient(create_app(settings=settings), base_url="http://127.0.0.1") as client:
        yield client


def csrf_of(client: TestClient) -> str:
    client.get("/")
    return str(client.cookies["sfdash_csrf"])


def test_mounted_under_a_path_every_link_and_asset_stays_under_it(
        settings: StreamflowSettings, queue_name: str) -> None:
    seed(settings, queue_name)
    outer = Starlette(routes=[Mount("/ops/queues", app=create_app(settings=settings))])
    with TestClient(outer, base_url="http://127.0.0.1") as client:
        page = client.get("/ops/queues/")
        assert page.status_code == 200
        assert f"/ops/queues/queues/{queue_name}" in page.text
        assert "/ops/queues/static/dashboard.css" in page.text
        assert client.get("/ops/queues/static/dashboard.js").status_code == 200
        assert client.get(f"/ops/queues/queues/{queue_name}").status_code == 200
        assert client.cookies.get("sfdash_csrf")


def test_actions_need_the_csrf_token(client: TestClient, settings: StreamflowSettings,
                                     queue_name: str) -> None:
    url = f"/queues/{queue_name}/actions/pause"
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf": "forged"}).status_code == 403
    token = csrf_of(client)
    cross = client.post(url, data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert not paused(settings, queue_name)
    done = client.post(url, data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303
    assert paused(settings, queue_name)


def test_a_refusal_is_one_line_on_the_next_page(client: TestClient, queue_name: str) -> None:
    token = csrf_of(client)
    page = client.post(f"/queues/{queue_name}/actions/clean",
                       data={"csrf": token, "state": "nonsense"})
    assert page.status_code == 200
    assert "clean needs a state" in page.text or "job browsing needs" in page.text
    assert "Traceback" not in page.text


@pytest.mark.skipif(not BROWSE, reason="job browsing API not on this branch")
def test_a_library_refusal_is_shown_as_its_message(settings: StreamflowSettings,
                                                   queue_name: str) -> None:
    async def go() -> None:
        async with Queue(queue_name, settings=settings) as q:
            await q.add("noop", {}, job_id="evt_waiting")

    run(go)
    with TestClient(create_app(settings=settings), base_url="http://127.0.0.1") as client:
        token = csrf_of(client)
        page = client.post(f"/queues/{queue_name}/actions/job",
                           data={"csrf": token, "action": "retry", "job_id": "evt_waiting"})
        assert page.status_code == 200
        flash = page.text.split('id="flash">', 1)[1].split("</div>", 1)[0]
        assert "evt_waiting" in flash and "waiting" in flash and "dead" in flash, flash
        assert "Traceback" not in page.text


def test_token_guards_pages_api_and_actions(settings: StreamflowSettings,
                                            queue_name: str) -> None:
    seed(settings, queue_name)
    app = create_app(settings=settings, token="a-long-enough-token")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        first = client.get("/", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"].endswith("/login?next=/")
        assert client.get("/api/overview").status_code == 401
        assert client.get("/static/dashboard.css").status_code == 200
        login = client.get("/login")
        csrf = str(client.cookies["sfdash_csrf"])
        assert login.status_code == 200
        wrong = client.post("/login", data={"csrf": csrf, "token": "nope", "next": "/"})
        assert wrong.status_code == 401
        right = client.post("/login", data={"csrf": csrf, "token": "a-long-enough-token",
                                            "next": "//evil.example/"}, follow_redirects=False)
        assert right.status_code == 303
        assert right.headers["location"] == "/"  # never off-site
        assert "a-long-enough-token" not in str(right.headers)
        assert client.get("/api/overview").status_code == 200


def test_read_only_refuses_actions(settings: StreamflowSettings, queue_name: str) -> None:
    seed(settings, queue_name)
    with TestClient(create_app(settings=settings, read_only=True),
                    base_url="http://127.0.0.1") as client:
        page = client.get(f"/queues/{queue_name}")
        assert 'method="post"' not in page.text
        refused = client.post(f"/queues/{queue_name}/actions/pause",
                              data={"csrf": str(client.cookies["sfdash_csrf"])})
        assert refused.status_code == 403
    assert not paused(settings, queue_name)


def test_discovery_is_cached_between_refreshes(settings: StreamflowSettings,
                                               queue_name: str) -> None:
    seed(settings, queue_name)
    app = create_app(settings=settings, discovery_ttl=600)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for _ in range(5):
            snapshot: dict[str, Any] = client.get("/api/overview").json()
        assert [row["name"] for row in snapshot["queues"]] == [queue_name]
        assert snapshot["queues"][0]["waiting"] == 3
    assert app.state.dashboard.directory.scans == 1


def test_an_unknown_queue_is_a_404_page(client: TestClient) -> None:
    page = client.get("/queues/nope")
    assert page.status_code == 404
    assert "no queue &#39;nope&#39;" in page.text


def test_redis_down_is_a_one_line_page(redis_url: str) -> None:
    gone = StreamflowSettings.from_url("redis://127.0.0.1:1/0")
    with TestClient(create_app(settings=gone, queues=("payments",)),
                    base_url="http://127.0.0.1") as client:
        page = client.get("/")
        assert page.status_code == 503
        assert "cannot read from Redis at redis://127.0.0.1:1/0" in page.text
        assert "Traceback" not in page.text


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_config_refuses_bad_values(settings: StreamflowSettings) -> None:
    with pytest.raises(ValueError, match="8 characters"):
        DashboardConfig(settings=settings, token="short")
    with pytest.raises(ValueError, match="trace_id"):
        DashboardConfig(settings=settings, trace_url="http://jaeger/trace/")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamflow", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_command_refuses_a_public_bind_without_a_token() -> None:
    result = cli("dashboard", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "--token" in result.stderr and "Traceback" not in result.stderr


def test_command_exits_1_when_redis_is_unreachable() -> None:
    result = cli("--redis-url", "redis://127.0.0.1:1/0", "dashboard")
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr
