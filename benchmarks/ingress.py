"""Razorpay ingress: signed webhooks/s and latency under concurrent load, workers draining.

    python -m benchmarks.ingress [--requests 20000] [--seconds 10] [--connections 8 16 32]

A private redis-server, the ingress (``streamflow-razorpay ingress``, uvicorn) and one ledger
worker (SQLite) run as child processes; this process is the load generator: raw asyncio
sockets speaking HTTP/1.1 keep-alive over loopback, each connection sending one pre-signed,
distinct webhook at a time (closed loop). Each run is bounded by a request count and a time
limit. Latency is measured per request from the first byte written to the last byte read.
After the load, the time the worker needs to drain the backlog is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from benchmarks.common import free_port, percentile, private_redis
from consumers.razorpay.sample import sample_webhooks
from streamflow.keys import QueueKeys

SECRET = "whsec_bench_5be2d0"
REPO = Path(__file__).resolve().parent.parent
GOAL_RPS, GOAL_P99_MS = 3000, 20.0
T = TypeVar("T")


@dataclass
class Run:
    connections: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0


def build_requests(count: int, port: int, seed: int) -> list[bytes]:
    """Raw HTTP/1.1 requests of ``count`` distinct signed sample webhooks."""
    requests = []
    for hook in sample_webhooks(count, SECRET, seed):
        head = (f"POST /webhooks/razorpay HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(hook.body)}\r\n"
                f"X-Razorpay-Signature: {hook.signature}\r\n"
                f"X-Razorpay-Event-Id: {hook.event_id}\r\n\r\n")
        requests.append(head.encode() + hook.body)
    return requests


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, requests: list[bytes], connections: int, seconds: float) -> Run:
    """Send ``requests`` over ``connections`` keep-alive sockets, for at most ``seconds``."""
    run = Run(connections)
    pending = iter(requests)
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in pending:
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                writer.write(request)
                try:
                    status = await read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    run.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                run.latencies_ms.append((time.perf_counter() - started) * 1000)
                run.statuses[status] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    run.seconds = time.perf_counter() - started
    return run


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when installed (a cheaper load generator), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def wait_http(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            asyncio.run(_get_ready(port))
            return
        except (OSError, AssertionError):
            time.sleep(0.1)
    raise RuntimeError("the ingress did not become ready")


async def _get_ready(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: bench\r\n\r\n")
    assert await read_response(reader) == 200
    writer.close()


def backlog(client: redis.Redis, keys: QueueKeys, group: str = "workers") -> int:
    """Entries the worker group has not acknowledged yet (all of a stream it has not read)."""
    total = int(client.zcard(keys.delayed))
    for stream in keys.streams:
        try:
            groups = {info["name"].decode(): info for info in client.xinfo_groups(stream)}
        except redis.ResponseError:
            continue
        info = groups.get(group)
        if info is None:
            total += int(client.xlen(stream))
        else:
            total += int(info.get("lag") or 0) + int(info["pending"])
    return total


def spawn(command: str, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "consumers.razorpay.cli", command, *args, "--log-level",
             "warning"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run (max)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per run")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--ingress-workers", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=240.0)
    parser.add_argument("--no-worker", action="store_true",
                        help="no ledger worker during the load (ingress capacity alone)")
    args = parser.parse_args()

    with private_redis() as url, tempfile.TemporaryDirectory() as folder:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        port = free_port()
        env = {**os.environ, "RAZORPAY_WEBHOOK_SECRET": SECRET, "STREAMFLOW_REDIS_URL": url,
               "RAZORPAY_QUEUE": queue, "RAZORPAY_SQLITE_PATH": f"{folder}/ledger.sqlite3",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")]))}
        log = Path(folder) / "children.log"
        ingress = spawn("ingress", env, log, "--port", str(port), "--workers",
                        str(args.ingress_workers))
        worker = None if args.no_worker else spawn("worker", env, log, "--concurrency", "50")
        try:
            wait_http(port)
            total = args.warmup + args.requests * len(args.connections)
            print(f"signing {total} sample webhooks...", file=sys.stderr)
            requests = build_requests(total, port, seed=11)
            warmup = run_loop(load(port, requests[:args.warmup], 8, 30.0))
            runs, offset = [], args.warmup
            for connections in args.connections:
                batch = requests[offset:offset + args.requests]
                offset += args.requests
                runs.append(run_loop(load(port, batch, connections, args.seconds)))
            if worker is None:
                worker = spawn("worker", env, log, "--concurrency", "50")
            client = redis.Redis.from_url(url)
            keys = QueueKeys(queue)
            started = time.perf_counter()
            left = backlog(client, keys)
            while left and time.perf_counter() - started < args.drain_timeout:
                time.sleep(0.2)
                left = backlog(client, keys)
            drained = time.perf_counter() - started
            with sqlite3.connect(f"{folder}/ledger.sqlite3") as db:
                applied = db.execute("SELECT COUNT(*) FROM rzp_applied_events").fetchone()[0]
        finally:
            if worker is not None:
                stop(worker)
            stop(ingress)
        if left or any(run.errors for run in runs) or any(
                status != 200 for run in runs for status in run.statuses):
            print(log.read_text()[-3000:], file=sys.stderr)

    accepted = sum(run.statuses[200] for run in (warmup, *runs))
    report(runs, args, applied, accepted, left, drained)


def report(runs: list[Run], args: argparse.Namespace, applied: int, accepted: int, left: int,
           drained: float) -> None:
    during = "started after the load" if args.no_worker else "draining during the load"
    print(f"\nRazorpay ingress on {os.cpu_count()} CPUs, {args.ingress_workers} server "
          f"process(es), load generator in a separate process, 1 ledger worker {during}")
    print(f"{'conns':>5} {'requests':>9} {'secs':>6} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'non-200':>8} {'errors':>6}  goal")
    for run in runs:
        done = len(run.latencies_ms)
        rps = done / run.seconds if run.seconds else 0.0
        p99 = percentile(run.latencies_ms, 99)
        bad = sum(n for status, n in run.statuses.items() if status != 200)
        goal = "met" if rps >= GOAL_RPS and p99 <= GOAL_P99_MS else "missed"
        print(f"{run.connections:>5} {done:>9} {run.seconds:>6.2f} {rps:>8.0f} "
              f"{percentile(run.latencies_ms, 50):>7.2f} {percentile(run.latencies_ms, 90):>7.2f}"
              f" {p99:>7.2f} {max(run.latencies_ms, default=0):>7.2f} {bad:>8} {run.errors:>6}"
              f"  {goal}")
    print(f"goal: >= {GOAL_RPS} signed webhooks/s with p99 <= {GOAL_P99_MS:g} ms")
    state = "drained" if not left else f"{left} still waiting"
    print(f"worker: {applied} of {accepted} accepted events applied to the SQLite ledger; "
          f"backlog {state} {drained:.1f}s after the load stopped")


if __name__ == "__main__":
    main()
