"""The per-job control scripts (remove_job, promote_job, reschedule_job, update_job, retry_job,
clean_jobs, find_entry) called directly on a real Redis, with real queue keys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from streamflow import StreamflowSettings, scripts
from streamflow.codec import delayed_record
from streamflow.connection import create_client
from streamflow.keys import QueueKeys

pytestmark = pytest.mark.anyio

GROUP = "workers"
NORMAL = 1


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    redis = create_client(StreamflowSettings.from_url(redis_url).redis, max_connections=8)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


def now_ms() -> int:
    return int(time.time() * 1000)


async def remove(client: Any, keys: QueueKeys, job_id: str, entry: str = "", dead: str = "",
                 mode: str = "remove") -> str:
    result = await scripts.call(
        client, scripts.SCRIPTS["remove_job"],
        [keys.level("normal"), keys.delayed, keys.jobs, keys.dead, keys.where, keys.events,
         keys.control, keys.audit],
        [job_id, entry, dead, mode, now_ms(), 1, 100, "tester", NORMAL, 100])
    return str(result.decode() if isinstance(result, bytes) else result)


async def test_remove_job_by_state(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("normal")
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    first = (await client.xadd(stream, {"n": "a", "d": "1"})).decode()
    second = (await client.xadd(stream, {"n": "b", "d": "2"})).decode()
    third = (await client.xadd(stream, {"n": "c", "d": "3"})).decode()
    await client.xreadgroup(GROUP, "c1", {stream: ">"}, count=2)  # first, second delivered
    await client.xack(stream, GROUP, first)
    assert await remove(client, keys, f"normal:{first}", first) == "!done"
    assert await remove(client, keys, f"normal:{second}", second) == "!active"
    assert await remove(client, keys, f"normal:{third}", third) == "waiting"
    assert await remove(client, keys, f"normal:{third}", third) == "!missing"
    assert await remove(client, keys, "nowhere") == "!missing"
    assert await remove(client, keys, f"normal:{second}", second, mode="cancel") == "cancelling"
    [(_, request)] = await client.xrange(keys.control)
    assert request[b"l"] == b"1" and request[b"e"] == second.encode()
    dead = (await client.xadd(keys.dead, {"n": "x", "d": "{}", "i": "evt"})).decode()
    assert await remove(client, keys, "evt", dead=dead, mode="cancel") == "!dead"
    assert await remove(client, keys, "evt", dead=dead) == "dead"
    assert await client.xlen(keys.dead) == 0
    actions = [f[b"act"] for _, f in await client.xrange(keys.audit)]
    assert actions == [b"remove", b"cancel", b"remove"]


async def test_update_job_readds_a_waiting_job_with_its_id_and_time(
        client: Any, keys: QueueKeys) -> None:
    stream = keys.level("normal")
    entry = (await client.xadd(stream, {"n": "a", "d": '{"v":1}'})).decode()
    result = await scripts.call(
        client, scripts.SCRIPTS["update_job"],
        [stream, keys.delayed, keys.jobs, keys.where, keys.events, keys.audit],
        [f"normal:{entry}", entry, NORMAL, "normal", '{"v":2}', now_ms(), 1, 100, "", 100])
    assert result == b"waiting"
    [(new_entry, fields)] = await client.xrange(stream)
    assert fields == {b"n": b"a", b"d": b'{"v":2}', b"i": f"normal:{entry}".encode(),
                      b"t": entry.split("-")[0].encode()}
    assert await client.hget(keys.where, f"normal:{entry}") == b"1:" + new_entry


async def test_promote_and_reschedule_a_delayed_job(client: Any, keys: QueueKeys) -> None:
    record = delayed_record(NORMAL, [b"n", "later", b"d", b"{}", b"i", "evt_1"])
    await client.zadd(keys.delayed, {"evt_1": now_ms() + 60_000})
    await client.hset(keys.jobs, "evt_1", record)
    result = await scripts.call(client, scripts.SCRIPTS["reschedule_job"],
                                [keys.delayed, keys.events, keys.audit],
                                ["evt_1", 123, now_ms(), 1, 100, "", 100])
    assert await client.zscore(keys.delayed, "evt_1") == 123 and result
    location = await scripts.call(
        client, scripts.SCRIPTS["promote_job"],
        [keys.delayed, keys.jobs, keys.where, keys.events, keys.audit, *keys.streams],
        ["evt_1", now_ms(), 1, 100, "", 100])
    level, _, entry = location.decode().partition(":")
    assert level == "1" and await client.xrange(keys.level("normal"), entry, entry)
    assert await client.hget(keys.where, "evt_1") == location
    again = await scripts.call(
        client, scripts.SCRIPTS["promote_job"],
        [keys.delayed, keys.jobs, keys.where, keys.events, keys.audit, *keys.streams],
        ["evt_1", now_ms(), 1, 100, "", 100])
    assert again == b"!missing"


async def test_clean_jobs_walks_delayed_ties_and_ends(client: Any, keys: QueueKeys) -> None:
    old = now_ms() - 3_600_000
    for i in range(25):
        job = f"j{i}"
        enqueued = old if i % 2 else now_ms()
        await client.zadd(keys.delayed, {job: 5})  # every score the same: ties all the way
        await client.hset(keys.jobs, job, orjson.dumps(
            [NORMAL, "n", "x", "d", "{}", "i", job, "t", str(enqueued)]))
    removed, cursor, calls = 0, "", 0
    while True:
        count, raw = await scripts.call(client, scripts.SCRIPTS["clean_jobs"],
                                        [keys.delayed, keys.jobs],
                                        ["delayed", now_ms() - 60_000, 10, cursor])
        removed += count
        cursor = raw.decode()
        calls += 1
        if not cursor:
            break
    assert removed == 12 and calls < 10
    assert await client.zcard(keys.delayed) == 13 and await client.hlen(keys.jobs) == 13


async def test_find_entry_goes_back_in_chunks(client: Any, keys: QueueKeys) -> None:
    await client.xadd(keys.dead, {"x:level": "normal", "x:src": "5-0", "n": "a", "d": "1"})
    for i in range(30):
        await client.xadd(keys.dead, {"n": "a", "d": "1", "i": f"other{i}"})
    cursor, found, calls = "+", b"", 0
    while cursor:
        found, raw = await scripts.call(client, scripts.SCRIPTS["find_entry"], [keys.dead],
                                        ["normal:5-0", cursor, 7])
        cursor = raw.decode() if isinstance(raw, bytes) else raw
        calls += 1
        if found:
            break
    assert found and calls == 5
