"""Soak: the full pipeline at its highest sustained rate, with faults, for ``--seconds``.

    python -m benchmarks.soak --seconds 600 [--workers 2] [--concurrency 200] [--stalled 30]
                              [--markdown docs/benchmarks.md]

A producer process keeps ``--backlog`` jobs waiting (so the workers never starve), ``--workers``
worker processes run them, and every job records that it ran (``benchmarks.apps``: a bitmap on
a second Redis, written before the ack). Producer and workers reach Redis through a fault proxy
(``tests/faultproxy.py``) that resets every connection every ``--reset-every`` seconds (30);
every ``--kill-every`` seconds (60) one worker is SIGKILLed and a new one started.

Every ``--report-every`` seconds (60) one line: jobs/s, stream length, Redis used_memory,
worker RSS, duplicates so far, and "late": jobs added more than 60 s ago that have not run
yet (the jobs of a killed worker wait ``--stalled`` seconds, then run). At the end the
producer stops, the queue drains, and the summary counts jobs lost (must be 0) and
duplicates (at-least-once: the jobs a killed worker had recorded but not acknowledged, and
adds the client re-sent after a reset).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import psutil
import redis
import redis.asyncio as aioredis

from benchmarks.apps import DUPLICATES, PROCESSED, SEEN
from benchmarks.common import PAYLOAD, emit, private_redis
from streamflow import JobSpec, Queue, StreamflowSettings
from streamflow.keys import QueueKeys
from tests.faultproxy import FaultProxy

QUEUE = "soak"
PREFIX = "soak"
ADDED = "soak:added"
"""On the record server: how many jobs (seqs 0 .. n-1) the producer has had acknowledged."""


# -- producer (its own process) -------------------------------------------------------------

async def produce(url: str, record_url: str, backlog: int) -> None:
    settings = StreamflowSettings.from_url(url, prefix=PREFIX)
    settings.queue.events = "all"
    record = aioredis.Redis.from_url(record_url)
    stopping = anyio.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    added = 0
    async with Queue(QUEUE, settings=settings) as q:
        while not stopping.is_set():
            try:
                read = await entries_read(q)
                missing = backlog - (added - read)
                while missing > 0 and not stopping.is_set():
                    batch = min(missing, 2000)
                    await q.add_bulk([JobSpec("soak", {**PAYLOAD, "s": seq})
                                      for seq in range(added, added + batch)])
                    added += batch  # acknowledged: every seq below `added` must run
                    missing -= batch
                    await record.set(ADDED, added)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass  # a reset: add the same seqs again (a duplicate if the first try landed)
            with anyio.move_on_after(0.02):
                await stopping.wait()
    await record.set(ADDED, added)
    await record.aclose()


async def entries_read(q: Queue) -> int:
    read = 0
    for stream in q.keys.streams:
        for group in await q.client.xinfo_groups(stream):
            read += int(group["entries-read"] or 0)
    return read


# -- orchestrator ---------------------------------------------------------------------------

class Soak:
    def __init__(self, args: argparse.Namespace, url: str, record_url: str,
                 proxy: FaultProxy, logs: Path) -> None:
        self.args = args
        self.url = url
        self.record_url = record_url
        self.proxy = proxy
        self.logs = logs
        self.redis = redis.Redis.from_url(url)
        self.streams = QueueKeys(QUEUE, PREFIX, ("high", "normal", "low")).streams
        self.record = redis.Redis.from_url(record_url)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.kills = 0
        self.crashes = 0
        self.added_at: deque[tuple[float, int]] = deque()  # (time, acknowledged adds)

    def spawn(self, slot: int | None = None) -> None:
        self.started += 1
        log = open(self.logs / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.apps", self.proxy.url, QUEUE, "--prefix",
             PREFIX, "--concurrency", str(self.args.concurrency), "--stalled",
             str(self.args.stalled), "--record-url", self.record_url,
             "--consumer", f"soak-{self.started}"], stdout=log, stderr=log)
        if slot is None:
            self.workers.append(proc)
        else:
            self.workers[slot] = proc

    def counter(self, key: str) -> int:
        return int(self.record.get(key) or 0)

    def late(self, now: float) -> int:
        """Jobs acknowledged-added more than 60 s ago that have not run yet."""
        while len(self.added_at) > 1 and self.added_at[1][0] <= now - 60:
            self.added_at.popleft()
        if not self.added_at or self.added_at[0][0] > now - 60:
            return 0
        old = self.added_at[0][1]
        return old - self.seen(old) if old else 0

    def seen(self, n: int) -> int:
        return int(self.record.bitcount(SEEN, 0, n - 1, "BIT")) if n else 0

    def row(self, minute: float, processed: int, interval: float, now: float) -> dict[str, Any]:
        length = sum(int(self.redis.xlen(stream)) for stream in self.streams)
        rss = [psutil.Process(p.pid).memory_info().rss / 2**20 for p in self.workers
               if p.poll() is None]
        pending, oldest = 0, 0.0
        for stream in self.streams:
            summary = self.redis.xpending(stream, "workers")
            pending += int(summary["pending"])
            if summary["min"]:
                age = time.time() - int(summary["min"].split(b"-")[0]) / 1000
                oldest = max(oldest, age)
        return {"t_s": round(minute), "jobs_per_s": round(processed / interval),
                "stream_length": length, "pending": pending,
                "oldest_pending_s": round(oldest, 1),
                "used_memory_mb": round(int(self.redis.info("memory")["used_memory"]) / 2**20, 1),
                "worker_rss_mb": [round(r) for r in rss],
                "duplicates": self.counter(DUPLICATES), "late_60s": self.late(now),
                "kills": self.kills, "resets": self.proxy.resets}

    def tick(self, elapsed: float, next_kill: float, next_reset: float) -> tuple[float, float]:
        for i, proc in enumerate(self.workers):
            if proc.poll() is not None:
                self.crashes += 1
                self.spawn(i)
        if elapsed >= next_kill:
            victim = self.kills % len(self.workers)
            self.workers[victim].send_signal(signal.SIGKILL)
            self.workers[victim].wait(10)
            self.kills += 1
            self.spawn(victim)
            next_kill += self.args.kill_every
        if elapsed >= next_reset:
            self.proxy.reset()
            next_reset += self.args.reset_every
        return next_kill, next_reset

    def run(self) -> dict[str, Any]:
        args = self.args
        producer = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.soak", "--role", "producer", "--url",
             self.proxy.url, "--record-url", self.record_url, "--backlog", str(args.backlog)])
        for _ in range(args.workers):
            self.spawn()
        start = time.monotonic()
        next_kill, next_reset = float(args.kill_every), float(args.reset_every)
        next_report = float(args.report_every)
        last_processed, rows = 0, []
        print("  t_s  jobs/s  stream pending oldest_s  used_MB  worker_RSS_MB  dups  late>60s  "
              "kills  resets", flush=True)
        try:
            while time.monotonic() - start < args.seconds:
                time.sleep(1.0)
                now = time.monotonic()
                self.added_at.append((now, self.counter(ADDED)))
                next_kill, next_reset = self.tick(now - start, next_kill, next_reset)
                if now - start >= next_report:
                    processed = self.counter(PROCESSED)
                    row = self.row(now - start, processed - last_processed,
                                   args.report_every, now)
                    last_processed = processed
                    next_report += args.report_every
                    rows.append(row)
                    print(f"{row['t_s']:>5} {row['jobs_per_s']:>7} {row['stream_length']:>7} "
                          f"{row['pending']:>7} {row['oldest_pending_s']:>8} "
                          f"{row['used_memory_mb']:>8} {row['worker_rss_mb']!s:>14} "
                          f"{row['duplicates']:>5} {row['late_60s']:>9} {row['kills']:>6} "
                          f"{row['resets']:>7}", flush=True)
        finally:
            producer.send_signal(signal.SIGTERM)
            producer.wait(60)
        return self.drain(rows, time.monotonic() - start)

    def drain(self, rows: list[dict[str, Any]], loaded_s: float) -> dict[str, Any]:
        added = self.counter(ADDED)
        deadline = time.monotonic() + 2 * self.args.stalled + 120
        while self.seen(added) < added and time.monotonic() < deadline:
            for i, proc in enumerate(self.workers):
                if proc.poll() is not None:
                    self.crashes += 1
                    self.spawn(i)
            time.sleep(1.0)
        seen = self.seen(added)
        for proc in self.workers:
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            proc.wait(60)
        errors = sum(path.read_bytes().count(b"Traceback") for path in self.logs.iterdir())
        return {"seconds": round(loaded_s), "workers": self.args.workers,
                "concurrency": self.args.concurrency, "added": added, "ran": seen,
                "lost": added - seen, "duplicates": self.counter(DUPLICATES),
                "jobs_per_s": round(self.counter(PROCESSED) / loaded_s),
                "kills": self.kills, "resets": self.proxy.resets, "crashes": self.crashes,
                "tracebacks_in_worker_logs": errors, "worker_logs": str(self.logs),
                "minutes": rows}


MARK_BEGIN, MARK_END = "<!-- soak: begin -->", "<!-- soak: end -->"


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The soak section of docs/benchmarks.md."""
    lines = [MARK_BEGIN, "## Soak: the full pipeline under faults", "",
             f"`python -m benchmarks.soak --seconds {args.seconds}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.workers} worker "
             f"processes (concurrency {args.concurrency}, `stalled_interval` {args.stalled:g} "
             f"s), a producer keeping {args.backlog:,} jobs waiting, every connection reset "
             f"every {args.reset_every:g} s through a fault proxy, one worker SIGKILLed and "
             f"replaced every {args.kill_every:g} s. {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.2f} at the end. Each job records that it ran on a second "
             "Redis before it is acknowledged.", "",
             "| t (s) | jobs/s | stream length | pending | oldest pending (s) | used_memory MB "
             "| worker RSS MB | duplicates so far | waiting > 60 s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in result["minutes"]:
        rss = ", ".join(str(r) for r in row["worker_rss_mb"])
        lines.append(f"| {row['t_s']} | {row['jobs_per_s']:,} | {row['stream_length']:,} | "
                     f"{row['pending']:,} | {row['oldest_pending_s']} | "
                     f"{row['used_memory_mb']} | {rss} | {row['duplicates']:,} | "
                     f"{row['late_60s']:,} |")
    lines += ["", f"Added (acknowledged) {result['added']:,}, ran {result['ran']:,}, "
              f"**lost {result['lost']:,}**, ran twice {result['duplicates']:,} "
              f"(at-least-once: jobs a killed worker ran but had not acknowledged, and adds "
              f"the client sent again after a reset); {result['jobs_per_s']:,} jobs/s overall; "
              f"{result['kills']} kills, {result['resets']} connections reset, "
              f"{result['crashes']} worker crashes.", "",
              "The stream grows while a killed worker's entries wait for `stalled_interval`: "
              "trimming stops at the oldest pending entry (MINID), then catches up in one call "
              "once they are reclaimed and acknowledged.", MARK_END]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if MARK_BEGIN in text and MARK_END in text:
        before, rest = text.split(MARK_BEGIN, 1)
        text = before + section.rstrip("\n") + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(args: argparse.Namespace) -> None:
    logs = Path(tempfile.mkdtemp(prefix="streamflow-soak-"))
    with private_redis() as url, private_redis() as record_url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with FaultProxy(port) as proxy:
            redis.Redis.from_url(record_url).delete(SEEN, PROCESSED, DUPLICATES, ADDED)
            result = Soak(args, url, record_url, proxy, logs).run()
    emit(result)
    if args.markdown:
        write_markdown(Path(args.markdown), markdown(result, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--stalled", type=float, default=30.0)
    parser.add_argument("--kill-every", type=float, default=60.0)
    parser.add_argument("--reset-every", type=float, default=30.0)
    parser.add_argument("--report-every", type=float, default=60.0)
    parser.add_argument("--markdown", default="", help="write the table into this file")
    parser.add_argument("--role", choices=["soak", "producer"], default="soak")
    parser.add_argument("--url", default="")
    parser.add_argument("--record-url", default="")
    parsed = parser.parse_args()
    if parsed.role == "producer":
        anyio.run(produce, parsed.url, parsed.record_url, parsed.backlog)
    else:
        main(parsed)
