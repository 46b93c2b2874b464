"""BullMQ for Node (``bullmq/bench.js`` with ioredis): ``Queue.addBulk`` in chunks of 1,000 (all
chunks sent at once), ``Queue.add`` for the paced jobs and the single adds (from concurrent
async callers of one Queue: ioredis pipelines what they send in the same tick), and one
``Worker`` process with concurrency 100 (BullMQ's default is 1; 100 matches streamflow). Job
options are BullMQ's defaults (completed jobs are kept)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from .base import Peer
from .common import env

HERE = Path(__file__).resolve().parent / "bullmq"
CONCURRENCY = 100
NODE = shutil.which("node") or "node"


async def node(*args: str, timeout: float = 300) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        NODE, str(HERE / "bench.js"), *args, cwd=HERE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode:
        raise RuntimeError(f"node bench.js {args[0]} failed: {err.decode()[-600:]}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def node_package_version(name: str) -> str:
    try:
        meta = json.loads((HERE / "node_modules" / name / "package.json").read_text())
        return str(meta["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


class BullPeer(Peer):
    name = "bullmq"
    system = "BullMQ (Node, Redis)"
    concurrency = f"one Node process, Worker concurrency={CONCURRENCY} (default 1)"
    settings = "addBulk in chunks of 1,000; default job options (completed jobs kept)"

    async def open(self) -> None:
        if not (HERE / "node_modules" / "bullmq").is_dir():
            raise RuntimeError(f"run `npm ci` in {HERE}")

    async def enqueue_bulk(self, n: int) -> float | None:
        return float((await node("enqueue", env("BENCH_REDIS_URL"), str(n)))["seconds"])

    async def paced(self, count: int, interval: float) -> float:
        result = await node("paced", env("BENCH_REDIS_URL"), str(count), str(interval * 1000))
        return float(result["seconds"])

    async def single_adds(self, n: int, callers: int) -> dict[str, float]:
        return await node("single", env("BENCH_REDIS_URL"), str(n), str(callers))

    def worker_command(self, workers: int = 1) -> list[str]:
        return [NODE, str(HERE / "bench.js"), "worker", env("BENCH_REDIS_URL"), str(CONCURRENCY)]

    def versions(self) -> dict[str, str]:
        return {"bullmq": node_package_version("bullmq"),
                "ioredis": node_package_version("ioredis")}


PEER = BullPeer()
