"""Redis instructions per processed job, counted by valgrind's callgrind: the same figure on a
quiet or a busy machine, so two versions of the processing path compare in one run.

    python -m benchmarks.redis_instructions [--jobs 10000] [--events all|failures|none]
        [--code DIR ...]

Starts a private redis-server under callgrind, adds ``--jobs`` plain jobs (about 100 B each),
zeroes the counters, processes them with one ``Worker`` (no-op handler, concurrency 100) and
dumps: the instructions Redis ran for the processing (fetch and ack scripts, the worker's
background loops) divided by the jobs. ``--code`` names checkouts to measure (each runs with
its own ``streamflow`` on PYTHONPATH; default: this one), measured in turn on the same server.
Needs ``valgrind`` (callgrind_control) and ``redis-server``.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import emit, free_port, wait_for_redis

REPO = Path(__file__).resolve().parents[1]

WORKLOAD = r'''
import os, subprocess, sys
import anyio
from streamflow import Job, Queue, StreamflowSettings, Worker

url, pid, jobs, events, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
PAYLOAD = {"id": "pay_0123456789abcd", "amount": 50000, "currency": "INR", "method": "upi",
           "email": "user@example.com", "pad": "x" * 20}


def callgrind(*args):
    subprocess.run(["callgrind_control", *args, pid], check=True, capture_output=True)


async def main():
    settings = StreamflowSettings.from_url(url, prefix=f"cg{os.getpid()}")
    if events != "default":
        settings.queue.events = events
    async with Queue("instructions", settings=settings) as q:
        for offset in range(0, jobs, 5000):
            await q.add_bulk([("noop", PAYLOAD)] * min(5000, jobs - offset))
        finished = anyio.Event()
        count = 0

        async def noop(job: Job) -> None:
            nonlocal count
            count += 1
            if count == jobs:
                finished.set()

        worker = Worker("instructions", noop, settings=settings, concurrency=100)
        callgrind("-z")
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(handle_signals=False))
            await finished.wait()
            await worker.close()
        callgrind("-d", tag)
        await q.obliterate(force=True)

anyio.run(main)
'''


def dumped(folder: str, tag: str) -> int:
    """The instruction total of the dump triggered with ``tag``."""
    for path in glob.glob(os.path.join(folder, "callgrind.out.*")):
        text = Path(path).read_text(errors="replace")
        if f"\ndesc: Trigger: dump {tag}\n" in text:
            found = re.search(r"^summary: (\d+)", text, re.M)
            if found:
                return int(found[1])
    raise RuntimeError(f"no callgrind dump {tag!r} in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--events", choices=["default", "all", "failures", "none"],
                        default="default")
    parser.add_argument("--code", nargs="*", default=[str(REPO)],
                        help="checkouts whose streamflow drives the workload, measured in turn")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="bench-callgrind-")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind",
         f"--callgrind-out-file={folder}/callgrind.out.%p", "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for_redis(url, server, timeout=60, step=0.2)
        results: dict[str, list[float]] = {}
        for round_number in range(args.rounds):
            for i, code in enumerate(args.code):
                tag = f"r{round_number}c{i}"
                subprocess.run([sys.executable, "-c", WORKLOAD, url, str(server.pid),
                                str(args.jobs), args.events, tag], cwd=code, check=True,
                               env={**os.environ, "PYTHONPATH": code})
                per_job = dumped(folder, tag) / args.jobs
                results.setdefault(code, []).append(round(per_job))
        emit({"jobs": args.jobs, "events": args.events,
              "redis_instructions_per_job": results})
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
