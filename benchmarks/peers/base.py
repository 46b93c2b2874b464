"""The one small interface every peer implements.

A peer is a module with a ``PEER`` object of a subclass of :class:`Peer`. The driver
(``benchmarks.peers.driver``) runs the workloads against it in a subprocess of its own:

* ``enqueue_bulk(n)`` adds ``n`` payloads as fast as the system's bulk API allows;
* ``worker_command()`` is the command line of ONE worker process; its handler is a no-op that
  calls ``common.TRACKER.hit(data)``, so the driver learns counts, first start, last finish and
  enqueue-to-start latencies through the benchmark Redis;
* ``enqueue_one(data)`` / ``paced(count, interval)`` feed the latency workload;
* ``single_adds(n, callers)`` makes ``n`` one-job adds from ``callers`` concurrent callers (the
  webhook producer's pattern) and times each;
* ``waiting_memory()`` reads what the server holds for the waiting jobs (Redis peers leave it to
  the driver, which reads ``INFO memory``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .common import payload

PY = sys.executable


class Peer:
    name = "peer"
    system = ""
    """What the peer is, for the table (e.g. ``arq (Redis)``)."""
    on_redis = True
    """Whether jobs live in the benchmark Redis (memory is then INFO used_memory)."""
    concurrency = ""
    """How one worker process runs handlers, as stated in the output."""
    settings = ""
    """Other settings worth stating."""

    async def open(self) -> None:
        """Connect; called once per driver process."""

    async def close(self) -> None:
        """Disconnect."""

    async def reset(self) -> None:
        """Remove the state this peer keeps outside the benchmark Redis (which the driver
        empties itself)."""

    async def enqueue_bulk(self, n: int) -> float | None:
        """Add ``n`` no-latency payloads; may return the seconds it measured itself."""
        raise NotImplementedError

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        """Add one job."""
        raise NotImplementedError

    async def paced(self, count: int, interval: float) -> float:
        """Add ``count`` jobs, one every ``interval`` seconds, the enqueue time (ns) in each;
        returns the seconds it took."""
        return await pace(count, interval, lambda: self.enqueue_one(payload(time.time_ns())))

    async def single_adds(self, n: int, callers: int) -> dict[str, float]:
        """``n`` one-job adds from ``callers`` concurrent callers, each awaiting its add before
        the next (closed loop); returns seconds, p50_ms and p99_ms of the adds."""
        latencies: list[float] = []
        remaining = n

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                await self.enqueue_one(payload())
                latencies.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        seconds = time.perf_counter() - start
        latencies.sort()
        return {"seconds": seconds, "adds": len(latencies),
                "p50_ms": latencies[len(latencies) // 2],
                "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}

    def worker_command(self, workers: int = 1) -> list[str]:
        """The command line of one worker process."""
        raise NotImplementedError

    async def waiting_memory(self) -> tuple[int, str] | None:
        """(bytes, what they are) held by the server for the jobs now waiting; None for the
        driver's INFO used_memory reading."""
        return None

    def versions(self) -> dict[str, str]:
        """Package and server versions."""
        return {}


async def pace(count: int, interval: float, add: Callable[[], Awaitable[Any]]) -> float:
    """Call ``add`` ``count`` times on a fixed schedule (catching up when behind)."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await add()
    return time.perf_counter() - start


async def gather_bounded(n: int, make: Callable[[], Awaitable[Any]], limit: int = 50) -> None:
    """Run ``make()`` ``n`` times, at most ``limit`` at once (for systems without bulk add)."""
    remaining = n

    async def lane(share: int) -> None:
        for _ in range(share):
            await make()

    lanes = []
    for i in range(limit):
        share = remaining // (limit - i)
        remaining -= share
        if share:
            lanes.append(lane(share))
    await asyncio.gather(*lanes)


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
