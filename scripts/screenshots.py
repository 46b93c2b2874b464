"""Screenshots of the dashboard for docs/ and the README (``make screenshots``).

Starts a throwaway redis-server, seeds the demo queue (``streamflow.dashboard.demo.seed``) and
two small neighbours, serves the dashboard, and has headless Chromium (Debian's ``chromium``,
through Playwright) capture the overview, the queue page and a dead job's page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import anyio
import httpx

from streamflow import Queue, StreamflowSettings
from streamflow.dashboard.demo import DEMO_QUEUE, seed
from streamflow.localredis import free_port, start_redis

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = os.environ.get("STREAMFLOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def fill(settings: StreamflowSettings) -> str:
    """Seed the queues; returns the id of a dead job to show."""
    async with Queue(DEMO_QUEUE, settings=settings) as q:
        await seed(q)
        dead = await q.dead(count=50)
    async with Queue("emails", settings=settings) as q:
        await q.add_bulk([("email.receipt", {"to": f"user{i}@example.com"})
                          for i in range(240)])
    async with Queue("refunds", settings=settings) as q:
        await q.add_bulk([("refund.created", {"refund_id": f"rfnd_{i}"}) for i in range(35)])
        await q.pause()
    chosen = next(d for d in dead if d["name"] == "payment.captured")
    return f"{chosen['job_id']}?entry={chosen['entry_id']}"


def serve(url: str, stack: ExitStack) -> str:
    port = free_port()
    env = {**os.environ, "STREAMFLOW_REDIS_URL": url}
    process = subprocess.Popen([sys.executable, "-m", "streamflow", "dashboard", "--port",
                                str(port)], env=env, cwd=ROOT)
    stack.callback(lambda: (process.terminate(), process.wait(10)))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(base + "/login", timeout=1)
            return base
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the dashboard did not start") from None
            time.sleep(0.05)


def main() -> int:
    from playwright.sync_api import sync_playwright

    DOCS.mkdir(exist_ok=True)
    with ExitStack() as stack:
        url = start_redis(stack)
        job = anyio.run(fill, StreamflowSettings.from_url(url))
        base = serve(url, stack)
        profile = stack.enter_context(__import__("tempfile").TemporaryDirectory())
        with sync_playwright() as driver:
            context = driver.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1280, "height": 860}, device_scale_factor=1)
            page = context.pages[0]
            shots = {
                "dashboard-overview.png": "/",
                "dashboard-queue.png": f"/queues/{DEMO_QUEUE}?state=dead",
                "dashboard-dead-job.png": f"/queues/{DEMO_QUEUE}/jobs/{job}",
            }
            for name, path in shots.items():
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(DOCS / name), full_page=True)
                print(f"docs/{name}  <- {path}")
            context.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
