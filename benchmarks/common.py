"""Shared pieces of the benchmarks: a private redis-server, payloads, percentiles, output."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

import redis

PAYLOAD = {"id": "pay_0123456789abcd", "amount": 50000, "currency": "INR",
           "method": "upi", "email": "user@example.com", "pad": "x" * 20}
"""About 100 bytes of JSON, like a small webhook event."""


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_redis(url: str, proc: subprocess.Popen[bytes], *, timeout: float,
                   step: float) -> None:
    """Return once the server at ``url`` answers PING; raise when ``timeout`` seconds pass or
    its process ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(step)


@contextmanager
def private_redis() -> Iterator[str]:
    """A fresh redis-server on a free loopback port (clean memory readings), else REDIS_URL."""
    binary = shutil.which("redis-server")
    if binary is None or os.environ.get("BENCH_REDIS_URL"):
        yield os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", folder, "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            wait_for_redis(url, proc, timeout=10, step=0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_child(module: str, *args: str, env: dict[str, str] | None = None,
              timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m module args`` and parse the JSON object it prints last."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **(env or {})}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def redis_cpu_s(client: Any) -> float:
    """The server's CPU time so far (user + sys, all its threads), in seconds: deltas are the
    Redis CPU a workload cost when nothing else uses that server."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)
