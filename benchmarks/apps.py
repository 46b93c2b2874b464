"""Worker processes for the long benchmarks (retention, soak).

    python -m benchmarks.apps URL QUEUE --concurrency 200 [--record-url URL] [--stalled 30]

Handlers:

- ``noop`` returns at once.
- ``soak`` records that job ``data["s"]`` ran, on a separate record server, *before* the job
  is acknowledged: one ``BITFIELD SET u1`` per seq, batched over the jobs that finish
  together (the handler waits for its batch). An old bit of 1 means the job ran before
  (a duplicate). A worker SIGKILLed after the record but before the ack makes a duplicate,
  never a false loss.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis

from streamflow import Job, Router, StreamflowSettings, Worker

SEEN = "soak:seen"
"""Bitmap on the record server: bit s is set once job s ran."""
PROCESSED = "soak:processed"
DUPLICATES = "soak:duplicates"

router = Router()


@router.handler("noop")
async def noop(job: Job) -> None:
    return None


class Recorder:
    """Group commit of finished seqs to the record server."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self._seqs: list[int] = []
        self._flushed = anyio.Event()
        self._wanted = anyio.Event()

    async def record(self, seq: int) -> None:
        self._seqs.append(seq)
        flushed = self._flushed
        self._wanted.set()
        await flushed.wait()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            seqs, self._seqs = self._seqs, []
            flushed, self._flushed = self._flushed, anyio.Event()
            if not seqs:
                flushed.set()
                continue
            args: list[Any] = []
            for seq in seqs:
                args += ["SET", "u1", seq, 1]
            while True:
                try:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.execute_command("BITFIELD", SEEN, *args)
                    pipe.incrby(PROCESSED, len(seqs))
                    old, _ = await pipe.execute()
                    break
                except (aioredis.ConnectionError, aioredis.TimeoutError):
                    await anyio.sleep(0.1)
            duplicates = sum(old)
            if duplicates:
                await self.client.incrby(DUPLICATES, duplicates)
            flushed.set()


_recorder: Recorder | None = None


@router.lifespan
@asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    global _recorder
    url = os.environ.get("SOAK_RECORD_URL")
    if not url:
        yield
        return
    _recorder = Recorder(url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_recorder.run)
        yield
        tg.cancel_scope.cancel()
    await _recorder.client.aclose()


@router.handler("soak")
async def soak(job: Job) -> None:
    assert _recorder is not None, "SOAK_RECORD_URL is not set"
    await _recorder.record(int(job.data["s"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--stalled", type=float, default=30.0, help="stalled_interval (s)")
    parser.add_argument("--record-url", default="")
    parser.add_argument("--consumer", default=None)
    args = parser.parse_args()
    if args.record_url:
        os.environ["SOAK_RECORD_URL"] = args.record_url
    settings = StreamflowSettings.from_url(args.url, prefix=args.prefix)
    settings.queue.events = "all"
    settings.worker.stalled_interval = args.stalled
    worker = Worker(args.queue, router, settings=settings, concurrency=args.concurrency,
                    consumer=args.consumer)
    anyio.run(worker.run)


if __name__ == "__main__":
    main()
