"""Retention under sustained load: one worker process at full speed for ``--seconds``.

    python -m benchmarks.retention [--seconds 60] [--concurrency 200] [--backlog 20000]

A producer keeps ``--backlog`` jobs waiting at all times (it tops the backlog up every 20 ms),
so the worker never starves and never falls further behind: whatever the stream holds beyond
the backlog is acknowledged work that retention has not trimmed yet. Prints one line per
second (jobs/s, stream length, backlog, pending, Redis used_memory) and a JSON summary: the
stream length and used_memory must stay flat (compare the first and the last third).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import anyio

from benchmarks.common import PAYLOAD, emit, private_redis
from streamflow import JobSpec, Queue, StreamflowSettings

QUEUE = "retention"
PREFIX = "bench"


async def group_state(q: Queue) -> tuple[int, int]:
    """(entries read by the group, pending) over every level stream."""
    read = pending = 0
    for stream in q.keys.streams:
        for group in await q.client.xinfo_groups(stream):
            if group["name"] == b"workers":
                read += int(group["entries-read"] or 0)
                pending += int(group["pending"])
    return read, pending


async def produce(q: Queue, backlog: int, stop: anyio.Event, added: list[int]) -> None:
    while not stop.is_set():
        read, _ = await group_state(q)
        missing = backlog - (added[0] - read)
        while missing > 0:
            batch = min(missing, 5000)
            await q.add_bulk([JobSpec("noop", PAYLOAD)] * batch)
            added[0] += batch
            missing -= batch
        with anyio.move_on_after(0.02):
            await stop.wait()


async def main(seconds: int, concurrency: int, backlog: int) -> None:
    with private_redis() as url:
        settings = StreamflowSettings.from_url(url, prefix=PREFIX)
        async with Queue(QUEUE, settings=settings) as q:
            added = [0]
            await q.add_bulk([JobSpec("noop", PAYLOAD)] * backlog)
            added[0] = backlog
            worker = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.apps", url, QUEUE, "--prefix", PREFIX,
                 "--concurrency", str(concurrency)], env=os.environ.copy())
            rows: list[dict[str, Any]] = []
            try:
                stop = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(produce, q, backlog, stop, added)
                    rows = await sample(q, seconds, added)
                    stop.set()
            finally:
                worker.terminate()
                worker.wait(30)
    emit(summary(rows, concurrency, backlog))


async def sample(q: Queue, seconds: int, added: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    read, pending = await group_state(q)
    done_before = read - pending
    start = time.monotonic()
    print(f"{'s':>4} {'jobs/s':>8} {'stream':>8} {'backlog':>8} {'pending':>7} "
          f"{'acked, kept':>11} {'used_memory':>12}", flush=True)
    for second in range(1, seconds + 1):
        await anyio.sleep(max(0.0, start + second - time.monotonic()))
        read, pending = await group_state(q)
        length = sum([int(await q.client.xlen(s)) for s in q.keys.streams])
        memory = int((await q.client.info("memory"))["used_memory"])
        done = read - pending
        waiting = added[0] - read
        kept = length - waiting - pending  # acknowledged, not trimmed yet
        row = {"s": second, "jobs_per_s": done - done_before, "stream_length": length,
               "backlog": waiting, "pending": pending, "acked_kept": kept,
               "used_memory": memory}
        done_before = done
        rows.append(row)
        print(f"{second:>4} {row['jobs_per_s']:>8} {length:>8} {waiting:>8} {pending:>7} "
              f"{kept:>11} {memory:>12}", flush=True)
    return rows


def summary(rows: list[dict[str, Any]], concurrency: int, backlog: int) -> dict[str, Any]:
    third = max(1, len(rows) // 3)
    first, last = rows[3:3 + third], rows[-third:]  # skip the worker's start-up seconds

    def mean(part: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in part) / len(part) if part else float("nan")

    return {"seconds": len(rows), "concurrency": concurrency, "backlog": backlog,
            "jobs_per_s": mean(rows[3:], "jobs_per_s"),
            "stream_length_first_third": mean(first, "stream_length"),
            "stream_length_last_third": mean(last, "stream_length"),
            "stream_length_max": max(r["stream_length"] for r in rows),
            "acked_kept_max": max(r["acked_kept"] for r in rows),
            "used_memory_mb_first_third": mean(first, "used_memory") / 2**20,
            "used_memory_mb_last_third": mean(last, "used_memory") / 2**20,
            "used_memory_mb_max": max(r["used_memory"] for r in rows) / 2**20}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=20_000)
    args = parser.parse_args()
    anyio.run(main, args.seconds, args.concurrency, args.backlog)
