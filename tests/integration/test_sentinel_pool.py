"""Through Sentinel, a full pool makes callers wait for a connection instead of failing."""

from __future__ import annotations

import anyio
import pytest

from streamflow import Queue, StreamflowSettings
from streamflow.connection import create_client
from tests.servers import SentinelTopology

pytestmark = pytest.mark.anyio


async def test_more_concurrent_adds_than_connections(sentinel_topology: SentinelTopology,
                                                     queue_name: str) -> None:
    hosts = ",".join(f"{h}:{p}" for h, p in sentinel_topology.sentinel_addresses)
    settings = StreamflowSettings.from_url(f"redis+sentinel://{hosts}/streamflow/0")
    client = create_client(settings.redis, max_connections=2)
    try:
        async with Queue(queue_name, settings=settings, client=client) as q:
            ids: list[str | None] = []

            async def add(i: int) -> None:
                ids.append(await q.add("pay", {"i": i}, job_id=f"evt-{i}"))

            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(add, i)
            assert sorted(ids, key=str) == sorted((f"evt-{i}" for i in range(50)), key=str)
            assert (await q.counts())["waiting"] == 50
    finally:
        await client.aclose()
