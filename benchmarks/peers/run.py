"""Peer benchmarks: the same workloads through streamflow and the systems users would pick
instead, on this machine, in one run.

    python -m benchmarks.peers.run                      # all peers, 3 runs, 50,000 jobs
    python -m benchmarks.peers.run --peers streamflow,bullmq --runs 1 --jobs 5000

Starts its own redis-server on a free loopback port (no persistence, so INFO used_memory
deltas are clean) unless ``--redis-url`` names another one; RabbitMQ and PostgreSQL are the
local servers. Each (peer, run) is one subprocess (``benchmarks.peers.driver``) with a timeout;
runs are interleaved (run 1 of every peer, then run 2, ...) and the whole run keeps to
``--budget`` seconds, skipping (and saying so) runs that would not fit. Prints the table and
writes ``docs/benchmarks.md`` and ``docs/benchmarks.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .driver import PEER_MODULES, REPO

ALL_PEERS = ["bullmq", "streamflow", "arq", "saq", "taskiq", "celery", "rabbitmq", "postgres"]
NEEDS = {  # what a peer needs before it is worth starting: (python module | tool, why)
    "streamflow": ["py:streamflow.worker"],
    "arq": ["py:arq"],
    "saq": ["py:saq"],
    "taskiq": ["py:taskiq_redis"],
    "celery": ["py:celery"],
    "rabbitmq": ["py:aio_pika", "tcp:amqp"],
    "postgres": ["py:asyncpg", "tcp:pg"],
    "bullmq": ["tool:node", "file:benchmarks/peers/bullmq/node_modules/bullmq/package.json"],
}


@dataclass
class PeerResult:
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    runs: int = 0
    skipped: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    last_seconds: float = 0.0

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(value)


KEPT_MARKER = "<!-- kept by hand below: not generated -->"
"""What follows this line in docs/benchmarks.md survives a new peers run (soak, Cluster)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class RedisServer:
    """A private redis-server for the run: loopback only, no RDB, no AOF."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", self.dir,
             "--logfile", str(Path(self.dir) / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def unavailable(peer: str, args: argparse.Namespace) -> str:
    """Why ``peer`` cannot run here ("" when it can)."""
    import importlib.util

    for need in NEEDS.get(peer, []):
        kind, _, what = need.partition(":")
        if kind == "py":
            try:
                found = importlib.util.find_spec(what) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return (f"Python module {what} not importable (pip install -r "
                        "benchmarks/peers/requirements.txt)")
        elif kind == "tool" and shutil.which(what) is None:
            return f"{what} not found on PATH"
        elif kind == "file" and not (REPO / what).exists():
            return f"{what} missing (run `npm ci` in benchmarks/peers/bullmq)"
        elif kind == "tcp":
            url = urlparse(args.amqp_url if what == "amqp" else args.pg_dsn)
            port = url.port or (5672 if what == "amqp" else 5432)
            if not port_open(url.hostname or "127.0.0.1", port):
                return f"no server at {url.hostname}:{port}"
    return ""


def run_driver(peer: str, args: argparse.Namespace, redis_url: str, flush: str,
               timeout: float) -> tuple[list[dict[str, Any]], str]:
    """One run of one peer; returns its JSON lines and an error ("" when it ended well)."""
    cmd = [sys.executable, "-m", "benchmarks.peers.driver", "--peer", peer,
           "--jobs", str(args.jobs), "--redis-url", redis_url, "--flush", flush,
           "--amqp-url", args.amqp_url, "--pg-dsn", args.pg_dsn,
           "--latency-count", str(args.latency_count),
           "--latency-interval", str(1 / args.latency_rate),
           "--single-adds", str(args.single_adds), "--single-callers", str(args.single_callers),
           "--stage-timeout", str(max(30.0, timeout - 20))]
    if peer == "streamflow" and args.scale:
        cmd += ["--scale", args.scale]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    problem = ""
    try:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode:
            problem = f"driver exited with {proc.returncode}: {err.decode(errors='replace')[-500:]}"
    except subprocess.TimeoutExpired:
        # the driver's worker processes run in sessions of their own: find them first
        stray = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        problem = f"timed out after {timeout:.0f}s"
    lines = []
    for line in out.decode(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines, problem


def descendants(pid: int) -> list[int]:
    try:
        import psutil

        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return []


def collect(result: PeerResult, lines: list[dict[str, Any]]) -> bool:
    """Fold one run's lines into ``result``; True when the run gave a figure."""
    gave = False
    for line in lines:
        workload = line.get("workload")
        if "error" in line:
            result.errors.append(f"{workload}: {line['error']}")
            continue
        gave = True
        if workload == "info":
            result.info = line
        elif workload == "enqueue":
            result.add("enqueue", line["rate"])
        elif workload == "memory":
            result.add("memory", line["bytes_per_100k"])
            result.extra["memory_source"] = line.get("source", "")
        elif workload == "process":
            workers = line.get("workers", 1)
            result.add("process" if workers == 1 else f"process_w{workers}", line["rate"])
        elif workload == "latency":
            result.add("p50", line["p50_ms"])
            result.add("p99", line["p99_ms"])
            result.add("offered", line["offered_rate"])
        elif workload == "single":
            result.add("single", line["rate"])
            result.add("single_p50", line["p50_ms"])
            result.add("single_p99", line["p99_ms"])
            if line.get("redis_cpu_us_per_add") is not None:
                result.add("single_cpu", line["redis_cpu_us_per_add"])
    return gave


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", default=",".join(ALL_PEERS),
                   help=f"comma-separated, from {','.join(ALL_PEERS)}")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=50_000, help="jobs for (a), (b) and (e)")
    p.add_argument("--latency-seconds", type=float, default=3.0)
    p.add_argument("--latency-rate", type=float, default=1000.0, help="jobs/s offered in (c)")
    p.add_argument("--scale", default="2,4", help="streamflow worker processes for (e)")
    p.add_argument("--single-adds", type=int, default=10_000, help="one-job adds in (f)")
    p.add_argument("--single-callers", type=int, default=200,
                   help="concurrent callers making the (f) adds")
    p.add_argument("--budget", type=float, default=840.0,
                   help="seconds the whole run may take; runs that would not fit are skipped")
    p.add_argument("--peer-timeout", type=float, default=300.0,
                   help="seconds one run of one peer may take")
    p.add_argument("--redis-url", default="",
                   help="use this Redis (a dedicated DB, not 0) instead of a private server")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--markdown", default=str(REPO / "docs" / "benchmarks.md"))
    p.add_argument("--png", default=str(REPO / "docs" / "benchmarks.png"))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    args.peers = [x.strip() for x in args.peers.split(",") if x.strip()]
    unknown = [x for x in args.peers if x not in PEER_MODULES]
    if unknown:
        p.error(f"unknown peers: {', '.join(unknown)}; known: {', '.join(ALL_PEERS)}")
    if args.runs < 1 or args.jobs < 100:
        p.error("--runs must be >= 1 and --jobs >= 100")
    if args.redis_url and urlparse(args.redis_url).path.strip("/") in ("", "0"):
        p.error("--redis-url must name a dedicated DB (not 0): the driver empties it")
    args.latency_count = max(1, round(args.latency_seconds * args.latency_rate))
    return args


def main(argv: list[str] | None = None) -> int:
    from . import report

    args = parse(argv)
    started = time.monotonic()
    results = {peer: PeerResult(peer) for peer in args.peers}
    for peer, result in results.items():
        result.skipped = unavailable(peer, args)
        if result.skipped:
            log(f"{peer}: cannot run here: {result.skipped}")
    server = None if args.redis_url else RedisServer()
    redis_url = args.redis_url or server.url  # type: ignore[union-attr]
    flush = "db" if args.redis_url else "all"
    try:
        redis_info = report.redis_server_info(redis_url)
        for run in range(1, args.runs + 1):
            for peer in args.peers:
                result = results[peer]
                if result.skipped:
                    continue
                remaining = args.budget - (time.monotonic() - started)
                need = max(result.last_seconds * 1.15, 15.0)
                if remaining < need:
                    result.extra["budget"] = (f"run {run} of {args.runs} skipped: "
                                              f"{remaining:.0f}s of the budget left")
                    log(f"{peer}: run {run} skipped, {remaining:.0f}s left")
                    continue
                log(f"{peer}: run {run}/{args.runs} ...")
                t0 = time.monotonic()
                lines, problem = run_driver(peer, args, redis_url, flush,
                                            min(args.peer_timeout, remaining))
                result.last_seconds = time.monotonic() - t0
                if collect(result, lines):
                    result.runs += 1
                if problem:
                    result.errors.append(f"run {run}: {problem}")
                log(f"{peer}: run {run} took {result.last_seconds:.1f}s"
                    + (f" ({problem})" if problem else ""))
    finally:
        if server is not None:
            server.stop()
    wall = time.monotonic() - started
    for result in results.values():
        if not result.skipped and not result.runs:
            result.skipped = "every run failed: " + "; ".join(result.errors[-2:])[-400:]
    doc = report.Report(args, results, redis_info, wall)
    print(doc.console())
    if not args.no_write:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        target = Path(args.markdown)
        old = target.read_text() if target.exists() else ""
        kept = old[old.index(KEPT_MARKER):] if KEPT_MARKER in old else ""
        target.write_text(doc.markdown() + ("\n" + kept if kept else ""))
        try:
            doc.chart(args.png)
        except Exception as exc:
            log(f"chart not written: {type(exc).__name__}: {exc}")
        log(f"wrote {args.markdown} and {args.png}")
    return 0


def log(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
