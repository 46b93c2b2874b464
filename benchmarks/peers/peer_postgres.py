"""A PostgreSQL queue with asyncpg: a table, ``COPY`` for the bulk add, and workers that take
batches with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside a transaction, run them, and delete
them before commit (a worker that dies mid-batch leaves its rows to the others). An
``AFTER INSERT`` statement trigger sends NOTIFY, so idle workers wake at once instead of
polling (they also poll every 0.5 s).

Worker process: ``python -m benchmarks.peers.peer_postgres worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import asyncpg
import orjson

from .base import PY, Peer, package_version
from .common import TRACKER, env, payload

TABLE = "streamflow_bench_jobs"
CHANNEL = "streamflow_bench_jobs"
CONSUMERS = 4
BATCH = 100
POLL = 0.5
POOL = 50
"""Most connections of the single-add stage's pool (one per concurrent caller up to this):
PostgreSQL's default ``max_connections`` is 100, and the workers hold some."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    payload jsonb NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS {TABLE}_added ON {TABLE};
CREATE TRIGGER {TABLE}_added AFTER INSERT ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_notify();
"""
TAKE = f"SELECT id, payload FROM {TABLE} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
DONE = f"DELETE FROM {TABLE} WHERE id = ANY($1::bigint[])"


def dsn() -> str:
    return env("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class PostgresPeer(Peer):
    name = "postgres"
    system = "PostgreSQL queue (asyncpg, SKIP LOCKED)"
    on_redis = False
    concurrency = (f"asyncio, {CONSUMERS} consumer loops x batch {BATCH} "
                   f"(one connection each), LISTEN/NOTIFY wake-up")
    settings = (f"COPY for the bulk add; single adds: INSERT through an asyncpg pool of up to "
                f"{POOL} connections; take+run+delete in one transaction per batch")

    def __init__(self) -> None:
        self.conn: Any = None
        self.pool: Any = None
        self.server_version = "?"

    async def open(self) -> None:
        self.conn = await asyncpg.connect(dsn())
        await self.conn.execute(SCHEMA)
        self.server_version = await self.conn.fetchval("SHOW server_version")

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.conn is not None:
            await self.conn.execute(f"DROP TABLE IF EXISTS {TABLE}; "
                                    f"DROP FUNCTION IF EXISTS {TABLE}_notify()")
            await self.conn.close()

    async def reset(self) -> None:
        await self.conn.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")
        self.size_before = await self.size()

    async def size(self) -> int:
        return int(await self.conn.fetchval(f"SELECT pg_total_relation_size('{TABLE}')"))

    async def enqueue_bulk(self, n: int) -> float | None:
        # a payload of its own per job, encoded per job, as every other peer enqueues
        # (one text COPYed n times measured less work than the others do)
        dumps = orjson.dumps
        records = [(dumps(payload()).decode(),) for _ in range(n)]
        await self.conn.copy_records_to_table(TABLE, records=records, columns=["payload"])
        return None

    async def enqueue_one(self, data: dict[str, Any]) -> None:
        # one connection runs one statement at a time: concurrent callers share a pool
        target = self.pool if self.pool is not None else self.conn
        await target.execute(f"INSERT INTO {TABLE} (payload) VALUES ($1)", json.dumps(data))

    async def single_adds(self, n: int, callers: int) -> dict[str, float]:
        if self.pool is None:  # opened once: the driver's warm-up call pays the connects
            size = min(callers, POOL)
            self.pool = await asyncpg.create_pool(dsn(), min_size=size, max_size=size)
        return await super().single_adds(n, callers)

    def worker_command(self, workers: int = 1) -> list[str]:
        return [PY, "-m", "benchmarks.peers.peer_postgres", "worker"]

    async def waiting_memory(self) -> tuple[int, str] | None:
        return (await self.size() - self.size_before,
                "table + index size delta (pg_total_relation_size), on disk, not RAM")

    def versions(self) -> dict[str, str]:
        return {"asyncpg": package_version("asyncpg"), "PostgreSQL server": self.server_version}


PEER = PostgresPeer()


async def handler(data: dict[str, Any]) -> None:
    TRACKER.hit(data)


async def consume(conn: Any, wake: asyncio.Event, stop: asyncio.Event) -> None:
    while not stop.is_set():
        wake.clear()  # before the query: a NOTIFY that comes during it is not lost
        async with conn.transaction():
            rows = await conn.fetch(TAKE, BATCH)
            for row in rows:
                await handler(json.loads(row["payload"]))
            if rows:
                await conn.execute(DONE, [row["id"] for row in rows])
        if not rows:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL)


async def run_worker() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = await asyncpg.connect(dsn())
    conns = [await asyncpg.connect(dsn()) for _ in range(CONSUMERS)]
    wakes = [asyncio.Event() for _ in conns]

    def notified(*_: Any) -> None:
        for wake in wakes:
            wake.set()

    await listener.add_listener(CHANNEL, notified)
    loops = [asyncio.create_task(consume(c, w, stop)) for c, w in zip(conns, wakes, strict=True)]
    await stop.wait()
    for wake in wakes:
        wake.set()
    await asyncio.gather(*loops, return_exceptions=True)
    for conn in [listener, *conns]:
        await conn.close()


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    asyncio.run(run_worker())
