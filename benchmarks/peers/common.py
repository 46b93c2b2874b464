"""Pieces shared by the driver, the peer adapters and the worker processes.

A worker process of any peer (Python or the Node script) reports what its handler saw through
the benchmark's own Redis: every 100 ms a background thread writes ``count first_ns last_ns``
under the process id into the hash ``BENCH_TRACK_KEY`` and pushes new latencies (ns) onto the
list ``BENCH_TRACK_KEY:lat``. The handler itself only reads the clock and appends to a list, so
reporting costs the measured system nothing per job.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

PAD = "x" * 80
"""With ``{"ts": <19 digits>, "pad": PAD}`` a payload is about 100 bytes of JSON."""

REPORT_INTERVAL = 0.1


def payload(ts_ns: int = 0) -> dict[str, Any]:
    """The job payload: the enqueue time in ns (0 for jobs that measure no latency)."""
    return {"ts": ts_ns, "pad": PAD}


def env(name: str, default: str | None = None) -> str:
    """An environment variable the driver sets for the peer modules and worker processes."""
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"{name} is not set (worker processes are started by the driver)")
    return value


class Tracker:
    """Counts handler calls of this process; reports them from a daemon thread.

    Safe across fork (Celery's prefork children): the thread is started lazily by the first
    call in each process.
    """

    def __init__(self) -> None:
        self._pid = 0
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self._latencies: list[int] = []
        self._lock = threading.Lock()

    def hit(self, data: Any) -> None:
        """Call first thing in a handler, with the job's payload."""
        now = time.time_ns()
        if self._pid != os.getpid():
            self._restart(now)
        ts = data.get("ts", 0) if isinstance(data, dict) else 0
        with self._lock:
            if not self.first_ns:
                self.first_ns = now
            self.count += 1
            self.last_ns = now
            if ts:
                self._latencies.append(now - int(ts))

    def _restart(self, now: int) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self._latencies = []
        thread = threading.Thread(target=self._report_loop, name="bench-tracker", daemon=True)
        thread.start()

    def _report_loop(self) -> None:
        import redis  # the reporter is sync redis-py, in its own thread

        client = redis.Redis.from_url(env("BENCH_TRACK_URL"))
        key = env("BENCH_TRACK_KEY")
        field = f"{os.uname().nodename}-{os.getpid()}"
        reported = -1
        while True:
            time.sleep(REPORT_INTERVAL)
            with self._lock:
                count, first, last = self.count, self.first_ns, self.last_ns
                latencies, self._latencies = self._latencies, []
            if count == reported and not latencies:
                continue
            try:
                pipe = client.pipeline(transaction=False)
                if latencies:
                    pipe.rpush(f"{key}:lat", *latencies)
                pipe.hset(key, field, f"{count} {first} {last}")
                pipe.execute()
                reported = count
            except Exception:  # the benchmark Redis going away ends the run anyway
                with self._lock:
                    self._latencies[:0] = latencies


TRACKER = Tracker()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
