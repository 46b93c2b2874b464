"""Razorpay ingress: signed webhooks/s, latency and CPU per webhook, with the ledger worker.

    python -m benchmarks.ingress [--seconds 6] [--connections 8 16 32] [--ingress-workers 1]
                                 [--no-worker] [--client wrk|python] [--code PATH]

A private redis-server, the ingress (``streamflow-razorpay ingress``: uvicorn, ``--workers N``
processes sharing the port) and one ledger worker (SQLite) run as child processes. The load
comes from wrk (Debian's ``wrk`` package) with benchmarks/ingress_load.lua, which sends
requests written by this process: sample Razorpay events with real HMAC signatures and distinct
event ids, each sent once; without wrk (or with ``--client python``) this process sends them
from asyncio sockets (a costlier client, on the same 2 cores). Each connection sends one
request at a time (closed loop); latency runs from the request's first byte to the answer's
last. CPU time per webhook is read per process (load generator, ingress, Redis, worker), so
the table says where the machine's time goes. After each run the worker's backlog is read;
after the last, the time the worker needs to drain it.

``--code PATH`` runs the ingress and the worker from another source tree (an older commit:
``git archive <commit> | tar -x -C PATH``), with this load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis

from benchmarks.common import free_port, percentile, private_redis
from consumers.razorpay.sample import sample_webhooks
from streamflow.keys import QueueKeys

SECRET = "whsec_bench_5be2d0"
REPO = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "ingress_load.lua"
GOAL_RPS, GOAL_P99_MS = 8000, 10.0
T = TypeVar("T")


@dataclass
class Run:
    connections: int
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    refused: int = 0
    """Answers other than 200 (4xx/5xx)."""
    errors: int = 0
    """Connection errors and timeouts."""
    repeated: int = 0
    """Requests sent a second time because the pre-signed ones ran out (duplicates)."""
    cpu_us: dict[str, float] = field(default_factory=dict)
    """CPU microseconds per request, by process."""
    backlog: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def build_requests(count: int, port: int, seed: int) -> list[bytes]:
    """Raw HTTP/1.1 requests of ``count`` distinct signed sample webhooks, created within the
    last hour (the ingress refuses events from the future and older than the dedup TTL)."""
    requests = []
    start = int(time.time()) - 3000
    for hook in sample_webhooks(count, SECRET, seed, start=start,
                                per_second=max(1, count // 2000)):
        head = (f"POST /webhooks/razorpay HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(hook.body)}\r\n"
                f"X-Razorpay-Signature: {hook.signature}\r\n"
                f"X-Razorpay-Event-Id: {hook.event_id}\r\n\r\n")
        requests.append(head.encode() + hook.body)
    return requests


def wrk_load(port: int, requests: Sequence[bytes], connections: int, seconds: float,
             folder: Path) -> Run:
    """One wrk run over ``requests`` (its CPU time counts in this process's children)."""
    path = folder / "requests.bin"
    with path.open("wb") as file:
        for request in requests:
            file.write(b"%d\n" % len(request))
            file.write(request)
    wrk = subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s",
         str(LUA), f"http://127.0.0.1:{port}/", "--", str(path), "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = wrk.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if wrk.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed: {out.decode()[-1000:]} {err.decode()[-1000:]}")
    result = json.loads(lines[-1])
    errors = sum(result[name] for name in ("connect", "read", "write", "timeout"))
    return Run(connections, requests=result["requests"], seconds=result["duration_us"] / 1e6,
              p50_ms=result["p50_us"] / 1000, p90_ms=result["p90_us"] / 1000,
              p99_ms=result["p99_us"] / 1000, max_ms=result["max_us"] / 1000,
              refused=result["status"], errors=errors, repeated=result["repeated"])


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


async def python_load(port: int, requests: Sequence[bytes], connections: int,
                      seconds: float) -> Run:
    """Send ``requests`` over ``connections`` keep-alive sockets, for at most ``seconds``."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    pending = iter(requests)
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
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
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return Run(connections, requests=len(latencies), seconds=time.perf_counter() - started,
               p50_ms=percentile(latencies, 50), p90_ms=percentile(latencies, 90),
               p99_ms=percentile(latencies, 99), max_ms=max(latencies, default=0.0),
               refused=sum(n for status, n in statuses.items() if status != 200),
               errors=errors)


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


class Children:
    """The ingress, the worker and Redis: started, stopped, their CPU time read."""

    def __init__(self, env: dict[str, str], code: Path, log: Path, redis_pid: int) -> None:
        self.env, self.code, self.log = env, code, log
        self.redis = psutil.Process(redis_pid)
        self.ingress: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def spawn(self, command: str, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "consumers.razorpay.cli", command, *args,
                 "--log-level", "warning"], cwd=self.code, env=self.env, stdout=out,
                stderr=subprocess.STDOUT)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each part (the ingress with its server processes)."""
        seconds = {"redis": _cpu(self.redis)}
        if self.ingress is not None:
            parent = psutil.Process(self.ingress.pid)
            seconds["ingress"] = _cpu(parent) + sum(
                _cpu(child) for child in parent.children(recursive=True))
        if self.worker is not None:
            seconds["worker"] = _cpu(psutil.Process(self.worker.pid))
        return seconds

    def stop(self) -> None:
        for proc in (self.worker, self.ingress):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def measure(children: Children, load: Any, connections: int) -> Run:
    """One run of ``load``, with the CPU each process spent on it."""
    before, self_before = children.cpu(), _own_cpu()
    run: Run = load(connections)
    after, self_after = children.cpu(), _own_cpu()
    done = max(run.requests, 1)
    run.cpu_us = {name: (after[name] - before.get(name, 0.0)) / done * 1e6 for name in after}
    run.cpu_us["client"] = (self_after - self_before) / done * 1e6
    return run


def _own_cpu() -> float:
    """CPU seconds of this process and of its finished children (wrk)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime


def applied_events(path: Path) -> int:
    """Events in the ledger (0 while the worker has not created its tables yet)."""
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM rzp_applied_events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each run")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--ingress-workers", type=int, default=1, help="server processes")
    parser.add_argument("--no-worker", action="store_true",
                        help="no ledger worker during the load (ingress capacity alone)")
    parser.add_argument("--client", choices=("wrk", "python"),
                        default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="source tree the ingress and the worker run from")
    parser.add_argument("--max-rate", type=int, default=12_000,
                        help="distinct requests signed per second of a run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load")
    parser.add_argument("--drain-timeout", type=float, default=240.0)
    args = parser.parse_args()

    with private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        port = free_port()
        code = args.code.resolve()
        env = {**os.environ, "RAZORPAY_WEBHOOK_SECRET": SECRET, "STREAMFLOW_REDIS_URL": url,
               "RAZORPAY_QUEUE": queue, "RAZORPAY_SQLITE_PATH": str(folder / "ledger.sqlite3"),
               "PYTHONPATH": str(code)}
        client = redis.Redis.from_url(url)
        children = Children(env, code, folder / "children.log",
                            int(client.info("server")["process_id"]))
        children.ingress = children.spawn("ingress", "--port", str(port), "--workers",
                                          str(args.ingress_workers))
        if not args.no_worker:
            children.worker = children.spawn("worker", "--concurrency", "50")
        try:
            wait_http(port)
            per_run = int(args.max_rate * args.seconds)
            plan = [(8, args.warmup)] + [(conns, args.seconds) for conns in args.connections]
            total = sum(int(args.max_rate * secs) for _, secs in plan)
            print(f"signing {total} sample webhooks...", file=sys.stderr)
            requests = build_requests(total, port, seed=11)
            runs, offset = [], 0
            for connections, seconds in plan:
                batch = requests[offset:offset + int(args.max_rate * seconds)]
                offset += len(batch)

                def load(conns: int, batch: list[bytes] = batch, seconds: float = seconds) -> Run:
                    if args.client == "wrk":
                        return wrk_load(port, batch, conns, seconds, folder)
                    return run_loop(python_load(port, batch, conns, seconds))

                run = measure(children, load, connections)
                run.backlog = backlog(client, QueueKeys(queue))
                runs.append(run)
            del requests
            if children.worker is None:
                children.worker = children.spawn("worker", "--concurrency", "50")
            started = time.perf_counter()
            left = backlog(client, QueueKeys(queue))
            while left and time.perf_counter() - started < args.drain_timeout:
                time.sleep(0.2)
                left = backlog(client, QueueKeys(queue))
            drained = time.perf_counter() - started
            applied = applied_events(folder / "ledger.sqlite3")
        finally:
            children.stop()
        if left or any(run.errors or run.refused for run in runs):
            print(children.log.read_text()[-3000:], file=sys.stderr)
    report(runs[1:], args, applied, left, drained, per_run)


def report(runs: list[Run], args: argparse.Namespace, applied: int, left: int,
           drained: float, per_run: int) -> None:
    during = "started after the load" if args.no_worker else "running during the load"
    print(f"\nRazorpay ingress on {os.cpu_count()} CPUs: {args.ingress_workers} server "
          f"process(es), load from {args.client} (1 thread), 1 ledger worker {during}")
    print(f"{'conns':>5} {'requests':>8} {'req/s':>7} {'p50 ms':>6} {'p90 ms':>6} "
          f"{'p99 ms':>6} {'max ms':>6} {'non-200':>7} {'errors':>6}  CPU µs/request: "
          f"{'client':>6} {'ingress':>7} {'redis':>5} {'worker':>6}  {'backlog':>7}  goal")
    for run in runs:
        goal = "met" if run.rps >= GOAL_RPS and run.p99_ms <= GOAL_P99_MS else "missed"
        cpu = [f"{run.cpu_us[name]:.0f}" if name in run.cpu_us else "-"
               for name in ("client", "ingress", "redis", "worker")]
        print(f"{run.connections:>5} {run.requests:>8} {run.rps:>7.0f} {run.p50_ms:>6.2f} "
              f"{run.p90_ms:>6.2f} {run.p99_ms:>6.2f} {run.max_ms:>6.1f} {run.refused:>7} "
              f"{run.errors:>6}  {'':>15}{cpu[0]:>6} {cpu[1]:>7} {cpu[2]:>5} {cpu[3]:>6}  "
              f"{run.backlog:>7}  {goal}")
    print(f"goal: >= {GOAL_RPS} signed webhooks/s with p99 <= {GOAL_P99_MS:g} ms")
    repeated = sum(run.repeated for run in runs)
    if repeated:
        print(f"note: {repeated} requests were repeats (the {per_run} signed per run ran out; "
              f"answered as duplicates): raise --max-rate")
    state = "drained" if not left else f"{left} still waiting"
    print(f"worker: {applied} events applied to the SQLite ledger; backlog {state} "
          f"{drained:.1f}s after the load stopped")


if __name__ == "__main__":
    main()
