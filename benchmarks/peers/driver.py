"""Runs the workloads of ONE run against ONE peer and prints one JSON line per result.

    python -m benchmarks.peers.driver --peer arq --jobs 50000 --redis-url redis://127.0.0.1:PORT/0

Lines (``workload`` tells which): ``info`` (versions, settings), ``enqueue`` (a), ``memory`` (d),
``process`` (b, and (e) with ``workers`` > 1), ``latency`` (c), ``single`` (f), or any of them
with ``error``.
The runner starts this in a subprocess with a timeout, so a crash or a hang of one peer
costs that peer's figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .base import Peer
from .common import median, percentile

REPO = Path(__file__).resolve().parents[2]
PEER_MODULES = {
    "bullmq": "benchmarks.peers.peer_bullmq",
    "streamflow": "benchmarks.peers.streamflow_peer",
    "arq": "benchmarks.peers.peer_arq",
    "saq": "benchmarks.peers.peer_saq",
    "taskiq": "benchmarks.peers.peer_taskiq",
    "celery": "benchmarks.peers.peer_celery",
    "rabbitmq": "benchmarks.peers.peer_rabbitmq",
    "postgres": "benchmarks.peers.peer_postgres",
}
WARMUP_JOBS = 20
STOP_GRACE = 10.0


def emit(peer: str, workload: str, **fields: Any) -> None:
    print(json.dumps({"peer": peer, "workload": workload, **fields}), flush=True)


class WorkerGroup:
    """Worker processes of one stage; each in its own session so it can be stopped whole."""

    def __init__(self, command: list[str], count: int, logdir: Path, label: str) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for i in range(count):
            log = logdir / f"{label}-{i}.log"
            self.logs.append(log)
            with log.open("wb") as out:
                self.procs.append(subprocess.Popen(
                    command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True))

    def exited(self) -> str | None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                last = [ln for ln in tail(log, 2000).splitlines() if ln.strip()][-3:]
                return f"worker exited with {proc.returncode}: {' | '.join(last)}"
        return None

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(
                p.poll() is None for p in self.procs):
            await asyncio.sleep(0.1)
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            else:  # children of a worker that exited (Celery's pool) must not outlive it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


class Driver:
    def __init__(self, args: argparse.Namespace, peer: Peer) -> None:
        self.args = args
        self.peer = peer
        self.redis = aioredis.Redis.from_url(args.redis_url)
        self.logdir = Path(tempfile.mkdtemp(prefix=f"bench-{args.peer}-"))
        self.track_key = ""

    async def reset(self) -> None:
        if self.args.flush == "all":
            await self.redis.flushall()
        else:
            await self.redis.flushdb()
        await self.peer.reset()

    def new_track_key(self, stage: str) -> str:
        self.track_key = f"bench:track:{stage}:{uuid.uuid4().hex[:8]}"
        os.environ["BENCH_TRACK_KEY"] = self.track_key
        return self.track_key

    async def used_memory(self) -> int:
        info = await self.redis.info("memory")
        return int(info["used_memory"])

    async def progress(self) -> tuple[int, int, int]:
        """(jobs seen by all worker processes, first start ns, last start ns)."""
        rows = await self.redis.hgetall(self.track_key)
        total, first, last = 0, 0, 0
        for value in rows.values():
            count, f, la = (int(x) for x in value.split())
            total += count
            if f and (not first or f < first):
                first = f
            last = max(last, la)
        return total, first, last

    async def wait_for(self, expected: int, group: WorkerGroup,
                       timeout: float) -> tuple[int, int, int]:
        deadline = time.monotonic() + timeout
        while True:
            seen = await self.progress()
            if seen[0] >= expected:
                return seen
            problem = group.exited()
            if problem:
                raise RuntimeError(problem)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen[0]} of {expected} jobs done after {timeout:.0f}s; "
                                   f"worker log: {tail(group.logs[0])}")
            await asyncio.sleep(0.05)

    async def enqueue(self, n: int) -> float:
        start = time.perf_counter()
        measured = await self.peer.enqueue_bulk(n)
        return measured if measured is not None else time.perf_counter() - start

    async def throughput(self) -> None:
        name, n = self.args.peer, self.args.jobs
        await self.reset()
        before = await self.used_memory()
        seconds = await self.enqueue(n)
        emit(name, "enqueue", jobs=n, seconds=seconds, rate=n / seconds)
        await self.memory(before, n)
        await self.process(n, 1)

    async def memory(self, before: int, n: int) -> None:
        name = self.args.peer
        try:
            reading = await self.peer.waiting_memory()
            if reading is None:
                await asyncio.sleep(0.2)
                after = await self.used_memory()
                reading = (after - before, "Redis INFO used_memory delta")
            delta, source = reading
            emit(name, "memory", jobs=n, bytes=delta, bytes_per_100k=delta * 100_000 / n,
                 source=source)
        except Exception as exc:
            emit(name, "memory", error=f"{type(exc).__name__}: {exc}")

    async def process(self, n: int, workers: int) -> None:
        self.new_track_key(f"process{workers}")
        group = WorkerGroup(self.peer.worker_command(workers), workers, self.logdir,
                            f"process{workers}")
        try:
            _, first, last = await self.wait_for(n, group, self.args.stage_timeout)
        finally:
            await group.stop()
        seconds = max(last - first, 1) / 1e9
        emit(self.args.peer, "process", workers=workers, jobs=n, seconds=seconds,
             rate=n / seconds)

    async def scaled(self) -> None:
        for workers in self.args.scale:
            try:
                await self.reset()
                await self.enqueue(self.args.jobs)
                await self.process(self.args.jobs, workers)
            except Exception as exc:
                emit(self.args.peer, "process", workers=workers, error=describe(exc))

    async def latency(self) -> None:
        name, count = self.args.peer, self.args.latency_count
        await self.reset()
        key = self.new_track_key("latency")
        group = WorkerGroup(self.peer.worker_command(1), 1, self.logdir, "latency")
        try:
            await self.peer.enqueue_bulk(WARMUP_JOBS)
            await self.wait_for(WARMUP_JOBS, group, 60)
            seconds = await self.peer.paced(count, self.args.latency_interval)
            await self.wait_for(WARMUP_JOBS + count, group, 60)
            await asyncio.sleep(0.3)  # the reporter pushes latencies every 100 ms
        finally:
            await group.stop()
        values = [int(v) / 1e6 for v in await self.redis.lrange(f"{key}:lat", 0, -1)]
        if not values:
            raise RuntimeError("no latency was recorded")
        emit(name, "latency", jobs=len(values), offered_rate=count / seconds,
             p50_ms=percentile(values, 50), p99_ms=percentile(values, 99),
             max_ms=max(values), median_ms=median(values))

    async def single(self) -> None:
        name, n, callers = self.args.peer, self.args.single_adds, self.args.single_callers
        await self.reset()
        await self.peer.single_adds(min(n, 200), callers)  # warm up: connections, scripts
        before = await self.redis_cpu()
        result = await self.peer.single_adds(n, callers)
        cpu = (await self.redis_cpu() - before) / n * 1e6 if self.peer.on_redis else None
        emit(name, "single", adds=n, callers=callers, rate=n / result["seconds"],
             p50_ms=result["p50_ms"], p99_ms=result["p99_ms"], redis_cpu_us_per_add=cpu)

    async def redis_cpu(self) -> float:
        """The benchmark Redis's CPU time so far (user + sys), seconds."""
        info = await self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def run(self) -> None:
        name = self.args.peer
        await self.peer.open()
        emit(name, "info", system=self.peer.system, concurrency=self.peer.concurrency,
             settings=self.peer.settings, versions=self.peer.versions())
        try:
            for stage in self.args.stages:
                try:
                    await getattr(self, stage)()
                except Exception as exc:
                    emit(name, stage, error=describe(exc))
        finally:
            await self.reset()
            await self.peer.close()
            await self.redis.aclose()


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if os.environ.get("BENCH_DEBUG"):
        text += "\n" + traceback.format_exc()
    return text[-1500:]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", required=True, choices=sorted(PEER_MODULES))
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--flush", choices=["all", "db"], default="db",
                   help="all: the benchmark's own redis-server; db: only the given DB")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--latency-count", type=int, default=3000)
    p.add_argument("--latency-interval", type=float, default=0.001)
    p.add_argument("--scale", default="", help="extra worker-process counts, e.g. 2,4")
    p.add_argument("--single-adds", type=int, default=10_000)
    p.add_argument("--single-callers", type=int, default=200)
    p.add_argument("--stages", default="throughput,scaled,latency,single")
    p.add_argument("--stage-timeout", type=float, default=240.0)
    args = p.parse_args(argv)
    args.scale = [int(x) for x in args.scale.split(",") if x.strip()]
    args.stages = [s for s in args.stages.split(",") if s and (s != "scaled" or args.scale)]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    os.environ.update({
        "BENCH_REDIS_URL": args.redis_url,
        "BENCH_TRACK_URL": args.redis_url,
        "BENCH_AMQP_URL": args.amqp_url,
        "BENCH_PG_DSN": args.pg_dsn,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    })
    try:
        module = importlib.import_module(PEER_MODULES[args.peer])
    except Exception as exc:
        emit(args.peer, "info", error=f"cannot load the peer: {describe(exc)}")
        sys.exit(2)
    asyncio.run(Driver(args, module.PEER).run())


if __name__ == "__main__":
    main()
