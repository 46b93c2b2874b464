"""Dashboard server time with a deep backlog: ``python -m benchmarks.dashboard [--jobs N]``.

Fills one queue with N waiting jobs (default 1,000,000, ``add_bulk``) on a private
redis-server, with two small neighbour queues, then times the pages an on-call engineer opens
first, in process (httpx's ASGI transport: routing, Redis round trips, templates; no socket).
The discovery SCAN is cached: the first request pays it, the table shows it separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio
import httpx

from benchmarks.common import PAYLOAD, percentile, private_redis
from streamflow import Queue, StreamflowSettings
from streamflow.dashboard import create_app

QUEUE = "payments"
BATCH = 50_000


async def fill(settings: StreamflowSettings, jobs: int) -> float:
    started = time.perf_counter()
    async with Queue(QUEUE, settings=settings) as q:
        for start in range(0, jobs, BATCH):
            await q.add_bulk([("payment.captured", PAYLOAD)] * min(BATCH, jobs - start))
        waiting = (await q.counts())["waiting"]
        assert waiting == jobs, waiting
    for name in ("emails", "refunds"):
        async with Queue(name, settings=settings) as q:
            await q.add_bulk([("noop", {"i": i}) for i in range(100)])
    return time.perf_counter() - started


async def measure(settings: StreamflowSettings, rounds: int) -> list[list[str]]:
    app = create_app(settings=settings)
    paths = ["/", "/api/overview", f"/queues/{QUEUE}", f"/queues/{QUEUE}?state=dead",
             "/workers"]
    rows = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        started = time.perf_counter()
        first = await client.get("/")
        first_ms = (time.perf_counter() - started) * 1000
        assert first.status_code == 200 and QUEUE in first.text
        rows.append(["/ (first: SCAN + render)", f"{first_ms:.1f}", "", "", ""])
        for path in paths:
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                response = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            rows.append([path, f"{statistics.median(times):.1f}",
                         f"{percentile(times, 95):.1f}", f"{max(times):.1f}", str(rounds)])
    await app.state.dashboard.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with private_redis() as url:
        settings = StreamflowSettings.from_url(url)
        fill_s = anyio.run(fill, settings, args.jobs)
        print(f"filled {args.jobs:,} waiting jobs in {fill_s:.1f}s; timing {args.rounds} "
              "requests per page (ms, server time in process)")
        rows = anyio.run(measure, settings, args.rounds)
    widths = [max(len(r[i]) for r in [["page", "median", "p95", "max", "n"], *rows])
              for i in range(5)]
    for row in [["page", "median", "p95", "max", "n"], *rows]:
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                        for i, cell in enumerate(row)))


if __name__ == "__main__":
    main()
