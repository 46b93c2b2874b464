"""A real headless Chromium (Debian's ``chromium`` through Playwright) against a real
``streamflow dashboard`` process and a real Redis.

Each test gets its own key prefix (so the dashboard's discovery sees only that test's queues),
its own dashboard process, and a fresh browser profile. The tests skip, with the reason, only
when Playwright or the Chromium binary is missing; ``.ci/run`` installs both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from streamflow import Queue, StreamflowSettings
from streamflow.localredis import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("STREAMFLOW_TEST_CHROMIUM") or shutil.which("chromium") \
    or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(item.path).is_relative_to(here):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    """Playwright's driver; module-scoped, because while it lives the main thread holds its
    event loop, and the async tests of other modules need that thread free."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright_driver: Any, tmp_path: Path) -> Iterator[Any]:
    """A Chromium context with a fresh profile directory (``--user-data-dir``)."""
    context = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
        args=CHROMIUM_ARGS)
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser: Any) -> Any:
    """A tab that accepts the confirmation dialogs of the actions."""
    tab = browser.pages[0] if browser.pages else browser.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    return tab


@pytest.fixture
def prefix() -> str:
    return f"bt{uuid.uuid4().hex[:10]}"


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function from a synchronous Playwright test (whose thread already has
    Playwright's event loop, so in a thread of its own)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn).result()


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Return once ``check()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def reload_until(page: Any, check: Callable[[Any], bool], failure: str,
                 timeout: float = 20.0) -> None:
    """Reload ``page`` until ``check(page)`` holds (what the page shows is not pushed to it);
    fail with ``failure`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check(page):
        assert time.monotonic() < deadline, failure
        page.wait_for_timeout(100)
        page.reload()


def job_state_is(state: str) -> Callable[[Any], bool]:
    """A `reload_until` check: the job page shows ``state``."""
    return lambda page: bool(page.locator("#job-state").inner_text() == state)


def counts(stack: Stack, queue: str) -> dict[str, Any]:
    """The counts of ``queue``, read from Redis."""
    async def go() -> dict[str, Any]:
        async with stack.queue(queue) as q:
            return dict(await q.counts())

    return run(go)


def delete_key(stack: Stack, queue: str, key: str) -> None:
    """Delete ``key`` (e.g. the flag that makes the test provider fail) through a handle on
    ``queue``."""
    async def go() -> None:
        async with stack.queue(queue) as q:
            await q.client.delete(key)

    run(go)


@dataclass
class Stack:
    """What a browser test talks to: Redis settings, a dashboard process, worker processes."""

    redis_url: str
    prefix: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def settings(self) -> StreamflowSettings:
        settings = StreamflowSettings.from_url(self.redis_url, prefix=self.prefix)
        settings.worker.block_ms = 200
        return settings

    def env(self) -> dict[str, str]:
        return {**os.environ, "STREAMFLOW_REDIS_URL": self.redis_url,
                "STREAMFLOW_PREFIX": self.prefix, "STREAMFLOW_WORKER__BLOCK_MS": "200",
                "STREAMFLOW_WORKER__HEARTBEAT_INTERVAL": "0.5"}

    def queue(self, name: str) -> Queue:
        return Queue(name, settings=self.settings)

    def dashboard(self, *args: str) -> str:
        """Start ``streamflow dashboard`` with ``args``; returns its base URL once it answers."""
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "streamflow", "dashboard", "--port", str(port), *args],
            cwd=ROOT, env=self.env())
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/login", timeout=1).status_code < 500:
                    return url
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise AssertionError(f"the dashboard exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError("the dashboard did not answer within 20 s")
            time.sleep(0.05)

    def worker(self, queue: str) -> None:
        """Start a worker process on ``queue`` with the handlers of ``tests.browser.apps``."""
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "streamflow", "worker", queue, "--app",
             "tests.browser.apps:router", "--consumer", f"w-{uuid.uuid4().hex[:6]}",
             "--concurrency", "2", "--log-level", "WARNING"], cwd=ROOT, env=self.env()))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def stack(redis_url: str, prefix: str) -> Iterator[Stack]:
    stack = Stack(redis_url, prefix)
    try:
        yield stack
    finally:
        stack.stop()
