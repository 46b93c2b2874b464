"""FCALL (functions library) against EVALSHA (scripts) for the same moves, on a private Redis.

Reports, per mode and move, the server's CPU per call (``INFO commandstats`` usec_per_call of
``fcall`` / ``evalsha``) and the wall time of the client's batches, plus the client-side cost
of turning the FCALL command ``Script.command`` builds into EVALSHA (what ``scripts.pipeline``
does per command where the server has no functions library).

    .venv/bin/python -m benchmarks.lua_calls [--calls 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from typing import Any

from streamflow import JobSpec, Queue, StreamflowSettings, scripts
from streamflow.connection import create_client

from .common import PAYLOAD, emit, private_redis

BATCH = 100


def add_command(q: Queue) -> tuple[Any, ...]:
    """One plain job, as ``Queue.add`` sends it."""
    enqueuer = q._enqueuer
    return enqueuer.command([enqueuer.prepare(JobSpec("bench", PAYLOAD), 0)], "bench", "", 0)


async def measure(url: str, mode: str, calls: int) -> dict[str, float]:
    settings = StreamflowSettings.from_url(url)
    settings.redis.lua = mode  # type: ignore[assignment]
    client = create_client(settings.redis, max_connections=4)
    q = Queue(f"bench-{mode}", settings=settings)
    keys = q.keys
    result: dict[str, float] = {}
    try:
        await scripts.load_scripts(client)
        for move, command in (
                ("add_jobs", add_command(q)),
                ("trim_stream", scripts.TRIM_STREAM.command([keys.level("low")], ["="]))):
            await client.config_resetstat()
            started = time.perf_counter()
            for _ in range(calls // BATCH):
                await scripts.pipeline(client, [command] * BATCH)
            elapsed = time.perf_counter() - started
            verb = "fcall" if mode == "fcall" else "evalsha"
            stats = (await client.info("commandstats"))[f"cmdstat_{verb}"]
            result[f"{move}_server_us_per_call"] = float(stats["usec_per_call"])
            result[f"{move}_wall_us_per_call"] = elapsed / calls * 1e6
        await q.obliterate(force=True)
    finally:
        await q.close()
        await client.aclose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    command = add_command(Queue("x"))
    per_translation = min(timeit.repeat(lambda: scripts._as_evalsha(command), number=100_000,
                                        repeat=5)) / 100_000
    results: dict[str, Any] = {"translate_us": round(per_translation * 1e6, 3)}
    with private_redis() as url:
        for round_number in range(options.rounds):  # alternate which mode goes first
            for mode in ("evalsha", "fcall")[::1 if round_number % 2 else -1]:
                figures = asyncio.run(measure(url, mode, options.calls))
                for name, value in figures.items():
                    key = f"{mode}_{name}"
                    best = results.get(key)
                    results[key] = round(value if best is None else min(best, value), 2)
    emit(results)


if __name__ == "__main__":
    main()
