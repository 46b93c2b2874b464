"""Each Lua script of ``streamflow/lua`` called directly on a real Redis, with real queue keys.

Scripts are called through ``scripts.call`` (negative codes raise ``ScriptError``) or
``scripts.pipeline`` (results, negative codes included, returned in place).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import anyio
import orjson
import pytest

from streamflow import StreamflowSettings, scripts
from streamflow.codec import decode_job, delayed_record, envelope_fields, pairs
from streamflow.connection import create_client
from streamflow.errors import ScriptCode, ScriptError
from streamflow.keys import QueueKeys

pytestmark = pytest.mark.anyio

GROUP = "workers"
HIGH, NORMAL, LOW = 0, 1, 2
EVENTS_MAXLEN = 1000
DEDUP_TTL_MS = 60_000
REPLY_TTL_MS = 60_000


@pytest.fixture(params=["fcall", "evalsha"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every move is tested as a function of the library (FCALL) and as a script (EVALSHA)."""
    return str(request.param)


@pytest.fixture
async def client(redis_url: str, mode: str) -> AsyncIterator[Any]:
    settings = StreamflowSettings.from_url(redis_url)
    settings.redis.lua = mode  # type: ignore[assignment]
    redis = create_client(settings.redis, max_connections=8)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


def now_ms() -> int:
    return int(time.time() * 1000)


def text(value: Any) -> Any:
    """Bytes in a (nested) reply as str, for readable comparisons."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list | tuple):
        return [text(v) for v in value]
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    return value


async def create_groups(client: Any, keys: QueueKeys, group: str = GROUP) -> None:
    for stream in keys.streams:
        await client.xgroup_create(stream, group, id="0", mkstream=True)


async def events(client: Any, keys: QueueKeys) -> list[dict[str, str]]:
    return [text(fields) for _, fields in await client.xrange(keys.events)]


async def pending_ids(client: Any, stream: str, consumer: str | None = None) -> list[str]:
    entries = await client.xpending_range(stream, GROUP, "-", "+", 1000, consumername=consumer)
    return [text(e["message_id"]) for e in entries]


async def read(client: Any, stream: str, consumer: str = "c1", count: int = 100) -> list[str]:
    reply = await client.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)
    return [text(entry_id) for _, entries in reply for entry_id, _ in entries]


# ----------------------------------------------------------------------------- add_jobs


def add_call(keys: QueueKeys, records: list[list[Any]], dedup_ids: tuple[str, ...] = (),
             emit: str = "1", extra_keys: tuple[str, ...] = (), token: str = ""
             ) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of add_jobs; the status records of caller-given ids (their dedup marks)
    first, then ``extra_keys`` (status records of other tracked jobs)."""
    keys_list = [keys.delayed, keys.jobs, keys.events, keys.reply(token or "t"), keys.where,
                 *keys.streams,
                 *(keys.status(i) for i in dedup_ids), *extra_keys]
    args: list[Any] = [now_ms(), len(keys.levels), emit, EVENTS_MAXLEN, DEDUP_TTL_MS, token,
                       REPLY_TTL_MS, *keys.levels]
    for record in records:
        args += record
    return keys_list, args


def immediate(level: int, name: str, data: bytes = b"{}", job_id: str | None = None,
              dedup_index: int = 0, status_index: int = 0) -> list[Any]:
    """``dedup_index``: the caller-given id's status record (its dedup mark)."""
    fields = envelope_fields(name, data, job_id=job_id)
    return [level, 0, 1 if dedup_index else 0, dedup_index or status_index, job_id or "", "",
            name, len(fields), *fields]


def delayed(level: int, name: str, job_id: str, due: int, data: bytes = b"{}",
            dedup_index: int = 0, enqueued: int | None = None, status_index: int = 0
            ) -> list[Any]:
    fields = envelope_fields(name, data, job_id=job_id, enqueued_ms=enqueued or now_ms())
    return [level, due, 1 if dedup_index else 0, dedup_index or status_index, job_id,
            delayed_record(level, fields), name, 0]


async def test_add_jobs_immediate_ids_are_level_and_entry_id(client: Any, keys: QueueKeys) -> None:
    result = await scripts.call(client, scripts.ADD_JOBS, *add_call(keys, [
        immediate(HIGH, "a", b'{"n":1}'), immediate(LOW, "b"), immediate(HIGH, "c")]))
    ids = text(result)
    high = [text(e) for e, _ in await client.xrange(keys.level("high"))]
    low = [text(e) for e, _ in await client.xrange(keys.level("low"))]
    assert ids == [f"high:{high[0]}", f"low:{low[0]}", f"high:{high[1]}"]
    assert await client.xlen(keys.level("normal")) == 0
    fields = (await client.xrange(keys.level("high")))[0][1]
    job = decode_job(b"0-1", fields, keys.queue, "high")
    assert (job.name, job.data) == ("a", {"n": 1})
    assert [(e["e"], e["i"], e["n"]) for e in await events(client, keys)] == [
        ("added", ids[0], "a"), ("added", ids[1], "b"), ("added", ids[2], "c")]


async def test_add_jobs_caller_ids_are_kept(client: Any, keys: QueueKeys) -> None:
    result = await scripts.call(client, scripts.ADD_JOBS, *add_call(
        keys, [immediate(NORMAL, "a", job_id="evt_1", dedup_index=1)], ("evt_1",)))
    assert text(result) == ["evt_1"]
    [entry] = [text(e) for e, _ in await client.xrange(keys.level("normal"))]
    status = text(await client.hgetall(keys.status("evt_1")))  # the dedup mark
    assert (status["state"], status["name"], status["where"]) == ("waiting", "a", f"1:{entry}")
    assert await client.hlen(keys.where) == 0  # the status record says where it is
    ttl = await client.pttl(keys.status("evt_1"))
    assert 0 < ttl <= DEDUP_TTL_MS


async def test_add_jobs_duplicate_returns_0_and_writes_nothing(
    client: Any, keys: QueueKeys
) -> None:
    first = await scripts.call(client, scripts.ADD_JOBS, *add_call(
        keys, [immediate(NORMAL, "a", job_id="evt_1", dedup_index=1)], ("evt_1",)))
    again = await scripts.call(client, scripts.ADD_JOBS, *add_call(keys, [
        immediate(NORMAL, "a", job_id="evt_1", dedup_index=1),
        immediate(NORMAL, "b", job_id="evt_2", dedup_index=2),
        delayed(NORMAL, "c", "evt_1", now_ms() + 60_000, dedup_index=1),
    ], ("evt_1", "evt_2")))
    assert text(first) == ["evt_1"]
    assert text(again) == [0, "evt_2", 0]
    assert await client.xlen(keys.level("normal")) == 2
    assert await client.zcard(keys.delayed) == 0
    assert [e["i"] for e in await events(client, keys)] == ["evt_1", "evt_2"]


async def test_add_jobs_delayed_goes_to_the_delayed_set(client: Any, keys: QueueKeys) -> None:
    due = now_ms() + 60_000
    result = await scripts.call(client, scripts.ADD_JOBS, *add_call(
        keys, [delayed(LOW, "later", "d1", due, b'{"x":1}')]))
    assert text(result) == ["d1"]
    assert await client.zscore(keys.delayed, "d1") == due
    record = orjson.loads(await client.hget(keys.jobs, "d1"))
    assert record[0] == LOW
    assert [await client.xlen(s) for s in keys.streams] == [0, 0, 0]
    [event] = await events(client, keys)
    assert (event["e"], event["i"], event["n"], event["due"]) == ("delayed", "d1", "later",
                                                                  str(due))


async def test_add_jobs_without_events(client: Any, keys: QueueKeys) -> None:
    await scripts.call(client, scripts.ADD_JOBS, *add_call(
        keys, [immediate(HIGH, "a")], emit="0"))
    assert await client.xlen(keys.level("high")) == 1
    assert await client.exists(keys.events) == 0


async def test_add_jobs_plain_records_are_named_after_their_entry(
        client: Any, keys: QueueKeys) -> None:
    result = await scripts.call(client, scripts.ADD_JOBS, *add_call(keys, [
        ["p", LOW, "a", b'{"n":1}', 0],
        ["p", HIGH, "b", b"2", 2, "tp", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"],
        immediate(LOW, "c", job_id="evt_1", dedup_index=1)], ("evt_1",)))
    low = [text(e) for e, _ in await client.xrange(keys.level("low"))]
    high = await client.xrange(keys.level("high"))
    assert text(result) == [f"low:{low[0]}", f"high:{text(high[0][0])}", "evt_1"]
    assert text(high[0][1])["tp"].startswith("00-1111")
    job = decode_job(high[0][0], high[0][1], keys.queue, "high")
    assert (job.name, job.data, job.traceparent is not None) == ("b", 2, True)
    assert [e["n"] for e in await events(client, keys)] == ["a", "b", "c"]


async def test_add_jobs_run_records_add_one_job_per_data_argument(
        client: Any, keys: QueueKeys) -> None:
    tp = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    result = text(await scripts.call(client, scripts.ADD_JOBS, *add_call(keys, [
        ["r", LOW, "a", 0, 3, b"1", b"2", b"3"],
        ["r", HIGH, "b", 2, "tp", tp, 1, b"4"],
        ["p", LOW, "c", b"5", 0]])))
    low = await client.xrange(keys.level("low"))
    high = await client.xrange(keys.level("high"))
    assert result == [*(f"low:{text(e)}" for e, _ in low[:3]), f"high:{text(high[0][0])}",
                      f"low:{text(low[3][0])}"]
    assert [text(f) for _, f in low] == [{"n": "a", "d": "1"}, {"n": "a", "d": "2"},
                                         {"n": "a", "d": "3"}, {"n": "c", "d": "5"}]
    assert text(high[0][1]) == {"n": "b", "d": "4", "tp": tp}
    assert [e["i"] for e in await events(client, keys)] == result


async def test_add_jobs_sent_again_with_its_token_returns_the_first_answer(
        client: Any, keys: QueueKeys) -> None:
    call = add_call(keys, [["p", NORMAL, "a", b"1", 0],
                           immediate(NORMAL, "b", job_id="evt_1", dedup_index=1)],
                    ("evt_1",), token="tok1")
    first = text(await scripts.call(client, scripts.ADD_JOBS, *call))
    again = text(await scripts.call(client, scripts.ADD_JOBS, *call))
    assert again == first and first[1] == "evt_1"
    assert await client.xlen(keys.level("normal")) == 2
    assert 0 < await client.pttl(keys.reply("tok1")) <= REPLY_TTL_MS
    other = add_call(keys, [immediate(NORMAL, "b", job_id="evt_1", dedup_index=1)],
                     ("evt_1",), token="tok2")
    other[0][3] = keys.reply("tok1")  # the slot's next call: a new token, same reply key
    assert await scripts.call(client, scripts.ADD_JOBS, *other) == [0]


async def test_add_jobs_with_caller_ids_only_is_recognised_by_its_marks(
        client: Any, keys: QueueKeys) -> None:
    records = [immediate(NORMAL, "a", job_id="evt_1", dedup_index=1),
               immediate(NORMAL, "b", job_id="evt_1", dedup_index=1),
               delayed(NORMAL, "c", "evt_2", now_ms() + 60_000, dedup_index=2)]
    call = add_call(keys, records, ("evt_1", "evt_2"), token="tok3")
    call[1][6] = 0  # no reply record: the marks alone recognise the call
    first = text(await scripts.call(client, scripts.ADD_JOBS, *call))
    again = text(await scripts.call(client, scripts.ADD_JOBS, *call))
    assert first == again == ["evt_1", 0, "evt_2"]  # the second evt_1 is a duplicate, twice
    assert await client.exists(keys.reply("tok3")) == 0
    assert await client.xlen(keys.level("normal")) == 1 and await client.zcard(keys.delayed) == 1
    assert text(await client.hget(keys.status("evt_1"), "mark")) == "tok3"
    assert await client.exists(keys.dedup("evt_1"), keys.dedup("evt_2")) == 0


# ----------------------------------------------------------------------------- fetch_jobs


async def fetch(client: Any, keys: QueueKeys, count: int, consumer: str = "c1",
                now: int | None = None) -> Any:
    """The fetch script's answer, each level's flat entries as ``[[id, [f, v, ...]], ...]``."""
    reply = await scripts.call(client, scripts.FETCH_JOBS,
                               [keys.meta, keys.limiter, *keys.streams],
                               [GROUP, consumer, count, now or now_ms()])
    if not isinstance(reply, list):
        return reply
    nested = list(reply)
    for i in range(0, len(reply), 2):
        if reply[i] == -1:
            break
        flat, entries, pos = reply[i + 1], [], 0
        while pos < len(flat):
            size = flat[pos + 1]
            entries.append([flat[pos], flat[pos + 2:pos + 2 + size]])
            pos += 2 + size
        nested[i + 1] = entries
    return nested


async def test_fetch_jobs_answers_each_level_flat(client: Any, keys: QueueKeys) -> None:
    """One table per level, not two per entry: {id, F, f1, v1, ..., id, F, ...}."""
    await create_groups(client, keys)
    plain = text(await client.xadd(keys.level("normal"), {"n": "a", "d": "1"}))
    more = text(await client.xadd(keys.level("normal"), {"n": "b", "d": "2", "i": "evt_1"}))
    reply = text(await scripts.call(client, scripts.FETCH_JOBS,
                                    [keys.meta, keys.limiter, *keys.streams],
                                    [GROUP, "c1", 10, now_ms()]))
    assert reply == [NORMAL, [plain, 4, "n", "a", "d", "1", more, 6, "n", "b", "d", "2", "i",
                              "evt_1"], -1, "0-0", more, "0-0"]


async def test_fetch_jobs_strict_priority_and_count(client: Any, keys: QueueKeys) -> None:
    await create_groups(client, keys)
    added = {level: [text(await client.xadd(keys.level(level), {"n": f"{level}{i}", "d": "1"}))
                     for i in range(n)]
             for level, n in (("low", 3), ("normal", 2), ("high", 2))}

    first = text(await fetch(client, keys, 3))
    assert [first[0], [e[0] for e in first[1]], first[2], [e[0] for e in first[3]]] == [
        HIGH, added["high"], NORMAL, added["normal"][:1]]
    assert first[1][0][1] == ["n", "high0", "d", "1"]
    assert len(first) == 4

    second = text(await fetch(client, keys, 10))
    assert second[0:4:2] == [NORMAL, LOW]
    assert [e[0] for e in second[1]] == added["normal"][1:]
    assert [e[0] for e in second[3]] == added["low"]
    last_ids = [added["high"][-1], added["normal"][-1], added["low"][-1]]
    assert second[4:] == [-1, *last_ids]  # every level drained: where to wait from

    assert text(await fetch(client, keys, 10)) == [-1, *last_ids]
    for level, ids in added.items():
        assert await pending_ids(client, keys.level(level), "c1") == ids


async def test_fetch_jobs_answers_the_last_ids_an_idle_worker_waits_after(
        client: Any, keys: QueueKeys) -> None:
    await create_groups(client, keys)
    assert text(await fetch(client, keys, 5)) == [-1, "0-0", "0-0", "0-0"]
    first = text(await client.xadd(keys.level("low"), {"n": "a", "d": "1"}))
    reply = text(await fetch(client, keys, 5))
    assert reply[0] == LOW and reply[2:] == [-1, "0-0", "0-0", first]
    # an entry added after the answer wakes an XREAD from those ids; the XREAD claims nothing
    later = text(await client.xadd(keys.level("high"), {"n": "b", "d": "1"}))
    woke = text(await client.xread(dict(zip(keys.streams, reply[3:], strict=True)), count=1,
                                   block=100))
    assert woke == [[keys.level("high"), [[later, {"n": "b", "d": "1"}]]]]
    assert await pending_ids(client, keys.level("high")) == []


async def test_fetch_jobs_high_backlog_keeps_low_waiting(client: Any, keys: QueueKeys) -> None:
    await create_groups(client, keys)
    for i in range(5):
        await client.xadd(keys.level("high"), {"n": f"h{i}", "d": "1"})
    await client.xadd(keys.level("low"), {"n": "l", "d": "1"})
    reply = text(await fetch(client, keys, 5))
    assert reply[0::2] == [HIGH]
    assert len(reply[1]) == 5
    assert await pending_ids(client, keys.level("low")) == []


async def test_fetch_jobs_returns_0_when_paused(client: Any, keys: QueueKeys) -> None:
    await create_groups(client, keys)
    await client.xadd(keys.level("normal"), {"n": "a", "d": "1"})
    await client.hset(keys.meta, "paused", "1")
    assert await fetch(client, keys, 10) == 0
    assert await pending_ids(client, keys.level("normal")) == []
    await client.hset(keys.meta, "paused", "0")
    reply = text(await fetch(client, keys, 10))
    assert reply[0] == NORMAL and len(reply[1]) == 1


async def test_fetch_jobs_backs_off_while_the_queue_is_rate_limited(
    client: Any, keys: QueueKeys
) -> None:
    await create_groups(client, keys)
    await client.xadd(keys.level("normal"), {"n": "a", "d": "1"})
    now = now_ms()
    await client.hset(keys.meta, "limited_until", now + 1500)
    assert await fetch(client, keys, 10, now=now) == -1500
    assert await pending_ids(client, keys.level("normal")) == []
    reply = text(await fetch(client, keys, 10, now=now + 1500))
    assert reply[0] == NORMAL and len(reply[1]) == 1


async def test_fetch_jobs_grants_at_most_rl_max_per_window(client: Any, keys: QueueKeys) -> None:
    await create_groups(client, keys)
    for i in range(5):
        await client.xadd(keys.level("high"), {"n": f"h{i}", "d": "1"})
    await client.xadd(keys.level("low"), {"n": "l", "d": "1"})
    await client.hset(keys.meta, mapping={"rl_max": 2, "rl_ms": 300, "rl_margin_ms": 0})
    now = now_ms()  # grants are stamped with the server's clock, so this test really waits

    first = text(await fetch(client, keys, 10, now=now))
    assert first[0] == HIGH and len(first[1]) == 2 and len(first) == 2
    wait = await fetch(client, keys, 10, now=now)
    assert -300 <= wait < 0  # until the first grant leaves the window
    assert await pending_ids(client, keys.level("high")) == [e[0] for e in first[1]]

    await anyio.sleep(0.31)
    later = text(await fetch(client, keys, 10, now=now_ms()))
    assert later[0] == HIGH and len(later[1]) == 2
    assert await client.zcard(keys.limiter) == 2
    assert 0 < await client.pttl(keys.limiter) <= 300


async def test_add_jobs_writes_a_status_record_for_tracked_jobs(
    client: Any, keys: QueueKeys
) -> None:
    status = keys.status("evt_9")
    await scripts.call(client, scripts.ADD_JOBS, *add_call(
        keys, [immediate(HIGH, "tracked", job_id="evt_9", dedup_index=1, status_index=2)],
        ("evt_9",), extra_keys=(status,)))
    record = text(await client.hgetall(status))
    assert (record["state"], record["name"]) == ("waiting", "tracked")
    assert "attempt" not in record  # readers take 1 until a worker starts the job
    assert 0 < await client.pttl(status) <= DEDUP_TTL_MS
    await client.hset(status, "state", "active")
    again = await scripts.call(client, scripts.ADD_JOBS, *add_call(
        keys, [immediate(HIGH, "tracked", job_id="evt_9", dedup_index=1, status_index=2)],
        ("evt_9",), extra_keys=(status,)))
    assert again == [0]
    assert text(await client.hget(status, "state")) == "active"  # a duplicate does not reset it


# -------------------------------------------------------------------------- complete_jobs


def complete_keys(keys: QueueKeys, stream: str) -> list[str]:
    return [stream, keys.events, keys.done, keys.where, keys.metrics_minute(0)]


def dead_keys(keys: QueueKeys, stream: str) -> list[str]:
    return [stream, keys.dead, keys.events, keys.where, keys.metrics_minute(0)]


def complete_args(done_maxlen: int, jobs: list[tuple[str, str, str]], emit: str = "1",
                  minid: str = "0", keep: str = "1", with_ids: tuple[str, ...] = ()) -> list[Any]:
    """complete_jobs' arguments for ``(entry id, job id, result)`` triples, every result kept
    (``keep="1"``) or none; ``with_ids``: the job ids that have a where record."""
    events: list[Any] = []
    results: list[Any] = []
    for _, job_id, result in jobs:
        events += [job_id, "job", 12]
        if keep == "1" and done_maxlen > 0:
            results += [job_id, "job", 12, result]
    return [GROUP, emit, EVENTS_MAXLEN, done_maxlen, minid, 60_000, len(jobs), len(with_ids),
            len(results) // 4, *(entry_id for entry_id, _, _ in jobs), *with_ids,
            *(events if emit == "1" else []), *results]


async def test_complete_jobs_acks_with_events_and_results(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    for i in range(4):
        await client.xadd(stream, {"n": "job", "d": str(i)})
    entries = await read(client, stream)
    done = [(e, f"normal:{e}", orjson.dumps({"ok": i}).decode()) for i, e in
            enumerate(entries[:3])]
    acked = await scripts.call(client, scripts.COMPLETE_JOBS,
                               complete_keys(keys, stream), complete_args(100, done))
    assert acked == 3
    assert await pending_ids(client, stream) == entries[3:]
    assert [(e["e"], e["i"], e["n"], e["ms"]) for e in await events(client, keys)] == [
        ("completed", job_id, "job", "12") for _, job_id, _ in done]
    kept = [text(f) for _, f in await client.xrange(keys.done)]
    assert [(f["i"], orjson.loads(f["r"])) for f in kept] == [
        (f"normal:{e}", {"ok": i}) for i, e in enumerate(entries[:3])]


async def test_complete_jobs_of_entries_no_longer_pending_ack_nothing(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    await client.xadd(stream, {"n": "job", "d": "1"})
    [entry] = await read(client, stream)
    args = complete_args(0, [(entry, "j", "")], emit="0")
    assert await scripts.call(client, scripts.COMPLETE_JOBS,
                              complete_keys(keys, stream), args) == 1
    assert await scripts.call(client, scripts.COMPLETE_JOBS,
                              complete_keys(keys, stream), args) == 0
    assert await client.exists(keys.events, keys.done) == 0


async def test_complete_jobs_caps_the_done_stream(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("high")
    await create_groups(client, keys)
    total, cap = 1200, 5
    for start in range(0, total, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 500):
            pipe.xadd(stream, {"n": "job", "d": str(i)})
        await pipe.execute()
    entries = await read(client, stream, count=total)
    assert len(entries) == total
    acked = await scripts.call(client, scripts.COMPLETE_JOBS, complete_keys(keys, stream),
                               complete_args(cap, [(e, e, "1") for e in entries], emit="0"))
    assert acked == total
    assert await pending_ids(client, stream) == []
    kept = [text(f)["i"] for _, f in await client.xrange(keys.done)]
    assert kept == entries[-cap:]


async def test_complete_jobs_drops_the_where_records_of_jobs_with_ids_and_trims_events(
        client: Any, keys: QueueKeys) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    entries = []
    for i in range(1500):
        fields = {"n": "job", "d": str(i)} | ({"i": f"evt_{i}"} if i % 2 else {})
        entry = text(await client.xadd(stream, fields))
        entries.append(entry)
        if i % 2:
            await client.hset(keys.where, f"evt_{i}", f"1:{entry}")
    await client.hset(keys.where, "other", "1:0-1")  # a job not in this batch keeps its record
    read_ids = await read(client, stream, count=1500)
    jobs = [(e, f"evt_{i}" if i % 2 else f"normal:{e}", "") for i, e in enumerate(read_ids)]
    with_ids = tuple(job_id for _, job_id, _ in jobs if job_id.startswith("evt_"))
    acked = await scripts.call(client, scripts.COMPLETE_JOBS, complete_keys(keys, stream),
                               complete_args(0, jobs, with_ids=with_ids))
    assert acked == 1500
    assert await pending_ids(client, stream) == []
    assert text(await client.hgetall(keys.where)) == {"other": "1:0-1"}
    # events are trimmed once after the batch, to about EVENTS_MAXLEN (whole nodes only)
    assert EVENTS_MAXLEN <= await client.xlen(keys.events) < EVENTS_MAXLEN + 200
    newest = await client.xrevrange(keys.events, count=1)
    assert text(newest[0][1])["i"] == jobs[-1][1]


async def test_complete_jobs_keeps_only_results_asked_for_and_drops_old_ones(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    old = text(await client.xadd(keys.done, {"i": "old", "n": "job", "ms": "1", "r": ""}))
    for i in range(3):
        await client.xadd(stream, {"n": "job", "d": str(i)})
    entries = await read(client, stream)
    command_keys = complete_keys(keys, stream)
    assert await scripts.call(client, scripts.COMPLETE_JOBS, command_keys, complete_args(
        100, [(entries[0], "not-kept", "1")], keep="0", emit="0")) == 1
    assert [text(f)["i"] for _, f in await client.xrange(keys.done)] == ["old"]
    ms, seq = old.split("-")
    newer_than_old = f"{ms}-{int(seq) + 1}"
    assert await scripts.call(client, scripts.COMPLETE_JOBS, command_keys, complete_args(
        100, [(e, e, "1") for e in entries[1:]], minid=newer_than_old, emit="0")) == 2
    assert [text(f)["i"] for _, f in await client.xrange(keys.done)] == entries[1:]


# ---------------------------------------------------------------------------- retry_later


def retry_args(entry_id: str, job_id: str, due: int, record: bytes) -> list[Any]:
    return [GROUP, entry_id, job_id, due, record, "1", EVENTS_MAXLEN, "charge", 1, "boom",
            "retrying"]


async def test_retry_later_acks_and_schedules(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("low")
    await create_groups(client, keys)
    await client.xadd(stream, {"n": "charge", "d": "{}"})
    [entry] = await read(client, stream)
    job_id, due = f"low:{entry}", now_ms() + 5000
    record = delayed_record(LOW, envelope_fields("charge", b"{}", job_id=job_id, attempt=2))
    result = await scripts.call(client, scripts.RETRY_LATER,
                                [stream, keys.delayed, keys.jobs, keys.events, keys.where],
                                retry_args(entry, job_id, due, record))
    assert result == 1
    assert await pending_ids(client, stream) == []
    assert await client.zscore(keys.delayed, job_id) == due
    assert await client.hget(keys.jobs, job_id) == record
    [event] = await events(client, keys)
    assert event == {"e": "retrying", "i": job_id, "n": "charge", "a": "1", "err": "boom",
                     "due": str(due)}


async def test_retry_later_not_pending_is_refused(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("low")
    await create_groups(client, keys)
    await client.xadd(stream, {"n": "charge", "d": "{}"})
    [entry] = await read(client, stream)
    command_keys = [stream, keys.delayed, keys.jobs, keys.events, keys.where]
    await scripts.call(client, scripts.RETRY_LATER, command_keys,
                       retry_args(entry, "j", 1000, b"[2]"))
    with pytest.raises(ScriptError) as refused:
        await scripts.call(client, scripts.RETRY_LATER, command_keys,
                           retry_args(entry, "j", 9999, b"[0]"))
    assert refused.value.code is ScriptCode.NOT_PENDING
    assert refused.value.script == "retry_later"
    assert await client.zscore(keys.delayed, "j") == 1000
    assert await client.hget(keys.jobs, "j") == b"[2]"
    assert len(await events(client, keys)) == 1
    # through a pipeline the code comes back in place
    [code] = await scripts.pipeline(client, [scripts.RETRY_LATER.command(
        command_keys, retry_args(entry, "j", 9999, b"[0]"))])
    assert code == -2


# --------------------------------------------------------------------------- move_to_dead


def dead_args(entry_id: str, job_id: str, fields: list[Any], reason: str = "failed",
              level: str = "normal", keep: int = 0, minid: str = "0") -> list[Any]:
    return [GROUP, entry_id, job_id, reason, "ValueError: bad", "Traceback ...", 1234,
            level, "1", EVENTS_MAXLEN, keep, minid, 60_000, *fields]


async def test_move_to_dead_keeps_fields_with_metadata(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    original = {"n": "charge", "d": '{"amount":5}', "i": "pay_1", "a": "3"}
    await client.xadd(stream, original)
    [entry] = await read(client, stream)
    flat = [x for kv in original.items() for x in kv]
    dead_id = await scripts.call(client, scripts.MOVE_TO_DEAD, dead_keys(keys, stream),
                                 dead_args(entry, "pay_1", flat))
    assert await pending_ids(client, stream) == []
    [(stored_id, fields)] = await client.xrange(keys.dead)
    assert stored_id == dead_id
    assert text(fields) == {"x:reason": "failed", "x:error": "ValueError: bad",
                            "x:tb": "Traceback ...", "x:at": "1234", "x:level": "normal",
                            "x:src": entry, **original}
    [event] = await events(client, keys)
    assert event == {"e": "dead", "i": "pay_1", "reason": "failed", "err": "ValueError: bad"}


async def test_move_to_dead_keeps_only_the_newest_when_asked(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("low")
    await create_groups(client, keys)
    for i in range(4):
        await client.xadd(stream, {"n": "x", "d": str(i)})
    entries = await read(client, stream)
    for entry in entries:
        await scripts.call(client, scripts.MOVE_TO_DEAD, dead_keys(keys, stream),
                           dead_args(entry, entry, ["n", "x"], level="low", keep=2))
    assert [text(f)["x:src"] for _, f in await client.xrange(keys.dead)] == entries[-2:]
    assert await pending_ids(client, stream) == []


async def test_move_to_dead_not_pending_is_refused(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    entry = text(await client.xadd(stream, {"n": "x", "d": "1"}))
    with pytest.raises(ScriptError) as refused:
        await scripts.call(client, scripts.MOVE_TO_DEAD, dead_keys(keys, stream),
                           dead_args(entry, "j", ["n", "x", "d", "1"]))
    assert refused.value.code is ScriptCode.NOT_PENDING
    assert await client.exists(keys.dead, keys.events) == 0


# ---------------------------------------------------------------------------- promote_due


async def promote(client: Any, keys: QueueKeys, now: int, limit: int = 1000) -> list[int]:
    """[moved, next due]; asserts that no record was dead-lettered."""
    moved, next_due, dead = await scripts.call(
        client, scripts.PROMOTE_DUE,
        [keys.delayed, keys.jobs, keys.events, keys.dead, keys.where, *keys.streams],
        [now, limit, "1", EVENTS_MAXLEN, 0, "0"])
    assert dead == 0
    return [int(moved), int(next_due)]


async def test_promote_due_moves_only_due_jobs_and_returns_next_due(
    client: Any, keys: QueueKeys
) -> None:
    now = now_ms()
    tricky = {"s": 'é "quoted" \\ back\nslash / \u0000 nul', "n": [1.5, -2, None, True]}
    await scripts.call(client, scripts.ADD_JOBS, *add_call(keys, [
        delayed(HIGH, "due1", "d1", now - 10, orjson.dumps(tricky), enqueued=now - 5000),
        delayed(LOW, "due2", "d2", now, b"2"),
        delayed(NORMAL, "later", "d3", now + 60_000, b"3"),
    ]))
    assert await promote(client, keys, now) == [2, now + 60_000]

    [(entry_id, fields)] = await client.xrange(keys.level("high"))
    job = decode_job(entry_id, fields, keys.queue, "high")
    assert (job.id, job.name, job.data, job.enqueued_ms) == ("d1", "due1", tricky, now - 5000)
    [(_, low_fields)] = await client.xrange(keys.level("low"))
    assert text(low_fields)["i"] == "d2"
    assert await client.xlen(keys.level("normal")) == 0
    assert text(await client.zrange(keys.delayed, 0, -1)) == ["d3"]
    assert text(await client.hkeys(keys.jobs)) == ["d3"]
    assert [(e["e"], e["i"]) for e in await events(client, keys) if e["e"] == "waiting"] == [
        ("waiting", "d1"), ("waiting", "d2")]

    assert await promote(client, keys, now + 60_000) == [1, -1]
    assert await promote(client, keys, now + 60_000) == [0, -1]


async def test_promote_due_respects_the_limit(client: Any, keys: QueueKeys) -> None:
    now = now_ms()
    await scripts.call(client, scripts.ADD_JOBS, *add_call(
        keys, [delayed(NORMAL, "j", f"d{i}", now - 100 + i) for i in range(5)]))
    assert await promote(client, keys, now, limit=2) == [2, now - 98]
    assert await client.xlen(keys.level("normal")) == 2
    assert await promote(client, keys, now) == [3, -1]


async def test_promote_due_drops_members_without_a_record(client: Any, keys: QueueKeys) -> None:
    await client.zadd(keys.delayed, {"orphan": 1})
    assert await promote(client, keys, now_ms()) == [0, -1]
    assert await client.exists(keys.delayed) == 0
    assert [await client.xlen(s) for s in keys.streams] == [0, 0, 0]


@pytest.mark.parametrize("record", [b"{not json", b'"a string"', b"[7, \"n\", \"x\"]",
                                    b"[0.5, \"n\", \"x\"]", b"[0]", b"[0, \"n\"]",
                                    b"[0, \"n\", {}]"])
async def test_promote_due_dead_letters_a_bad_record_and_moves_the_others(
        client: Any, keys: QueueKeys, record: bytes) -> None:
    now = now_ms()
    await scripts.call(client, scripts.ADD_JOBS, *add_call(keys, [
        delayed(NORMAL, "before", "d1", now - 30), delayed(NORMAL, "after", "d3", now - 10)]))
    await client.zadd(keys.delayed, {"bad": now - 20})
    await client.hset(keys.jobs, "bad", record)
    moved, next_due, dead = await scripts.call(
        client, scripts.PROMOTE_DUE,
        [keys.delayed, keys.jobs, keys.events, keys.dead, keys.where, *keys.streams],
        [now, 1000, "1", EVENTS_MAXLEN, 0, "0"])
    assert (moved, next_due, dead) == (2, -1, 1)
    assert await client.xlen(keys.level("normal")) == 2
    assert await client.exists(keys.delayed, keys.jobs) == 0
    [(_, fields)] = await client.xrange(keys.dead)
    letter = text(fields)
    assert (letter["x:reason"], letter["i"], letter["x:record"]) == (
        "malformed", "bad", record.decode())
    assert ("dead", "bad") in [(e["e"], e["i"]) for e in await events(client, keys)]


# ------------------------------------------------------------------------ reclaim_stalled


async def reclaim(client: Any, keys: QueueKeys, level: int, min_idle: int, max_stalled: int
                  ) -> tuple[Any, int]:
    claimed, dead = await scripts.call(
        client, scripts.RECLAIM_STALLED,
        [keys.streams[level], keys.dead, keys.events, keys.where, keys.metrics_minute(0),
         keys.workers],
        [GROUP, "c2", min_idle, 100, max_stalled, now_ms(), keys.levels[level], "1",
         EVENTS_MAXLEN, 0, "0", 60_000, 30_000])
    return claimed, dead


async def test_reclaim_stalled_claims_idle_and_dead_letters_redelivered(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    once = text(await client.xadd(stream, {"n": "once", "d": "1"}))
    twice = text(await client.xadd(stream, {"n": "twice", "d": "2", "i": "job_2"}))
    fresh = text(await client.xadd(stream, {"n": "fresh", "d": "3"}))
    await read(client, stream)
    await client.xclaim(stream, GROUP, "c1", 0, [once], idle=100_000, retrycount=1)
    await client.xclaim(stream, GROUP, "c1", 0, [twice], idle=100_000, retrycount=2)

    claimed, dead = await reclaim(client, keys, NORMAL, min_idle=60_000, max_stalled=1)

    assert text(claimed) == [[once, ["n", "once", "d", "1"]]]
    assert dead == 1
    pending = {text(e["message_id"]): (text(e["consumer"]), e["times_delivered"])
               for e in await client.xpending_range(stream, GROUP, "-", "+", 10)}
    assert pending == {once: ("c2", 2), fresh: ("c1", 1)}
    [(_, dead_fields)] = await client.xrange(keys.dead)
    dead_fields = text(dead_fields)
    assert (dead_fields["x:reason"], dead_fields["x:src"], dead_fields["x:level"]) == (
        "stalled", twice, "normal")
    assert (dead_fields["n"], dead_fields["d"], dead_fields["i"]) == ("twice", "2", "job_2")
    assert [(e["e"], e["i"]) for e in await events(client, keys)] == [
        ("stalled", "job_2"), ("reclaimed", f"normal:{once}")]


async def test_reclaim_stalled_tells_a_job_that_killed_its_worker_from_a_stalled_one(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    ids = {}
    for holder in ("died", "alive", "stopped"):
        ids[holder] = text(await client.xadd(stream, {"n": holder, "d": "1", "i": holder}))
        await client.xreadgroup(GROUP, holder, {stream: ">"}, count=1)
        await client.xclaim(stream, GROUP, holder, 0, [ids[holder]], idle=100_000,
                            retrycount=2)
    # "died" left its heartbeat behind, a minute old; "alive" beats; "stopped" deregistered
    await client.hset(keys.workers, "died", orjson.dumps({"last_seen_ms": now_ms() - 60_000}))
    await client.hset(keys.workers, "alive", orjson.dumps({"last_seen_ms": now_ms()}))

    claimed, dead = await reclaim(client, keys, NORMAL, min_idle=60_000, max_stalled=1)

    assert (claimed, dead) == ([], 3)
    letters = {text(f)["i"]: text(f) for _, f in await client.xrange(keys.dead)}
    assert {i: letter["x:reason"] for i, letter in letters.items()} == {
        "died": "killed_worker", "alive": "stalled", "stopped": "stalled"}
    assert letters["died"]["x:error"].startswith(
        "delivered 2 times without finishing; its worker died died mid-job (no heartbeat for 60s")
    assert sorted((e["i"], e["reason"]) for e in await events(client, keys)) == [
        ("alive", "stalled"), ("died", "killed_worker"), ("stopped", "stalled")]


async def test_reclaim_stalled_leaves_entries_not_idle_enough(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("high")
    await create_groups(client, keys)
    await client.xadd(stream, {"n": "a", "d": "1"})
    await read(client, stream)
    claimed, dead = await reclaim(client, keys, HIGH, min_idle=60_000, max_stalled=0)
    assert (claimed, dead) == ([], 0)
    assert [text(e["consumer"]) for e in await client.xpending_range(
        stream, GROUP, "-", "+", 10)] == ["c1"]


async def test_reclaim_stalled_drops_entries_deleted_while_pending(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("low")
    await create_groups(client, keys)
    gone = text(await client.xadd(stream, {"n": "a", "d": "1"}))
    await read(client, stream)
    await client.xdel(stream, gone)
    await client.xclaim(stream, GROUP, "c1", 0, [gone], idle=100_000, retrycount=5)
    claimed, dead = await reclaim(client, keys, LOW, min_idle=1000, max_stalled=1)
    assert (text(claimed), dead) == ([], 0)
    assert await pending_ids(client, stream) == []
    assert await client.exists(keys.dead) == 0


# ---------------------------------------------------------------------------- trim_stream


async def trim(client: Any, stream: str, mode: str = "=") -> int:
    return int(await scripts.call(client, scripts.TRIM_STREAM, [stream], [mode]))


async def test_trim_stream_never_removes_pending_or_unread(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    ids = [text(await client.xadd(stream, {"n": "j", "d": str(i)})) for i in range(8)]
    assert await read(client, stream, count=5) == ids[:5]
    await client.xack(stream, GROUP, ids[0], ids[1], ids[3])  # ids[2] and ids[4] stay pending

    assert await trim(client, stream) == 2
    left = [text(e) for e, _ in await client.xrange(stream)]
    assert left == ids[2:]
    assert await pending_ids(client, stream) == [ids[2], ids[4]]
    assert await trim(client, stream) == 0


async def test_trim_stream_with_nothing_pending_keeps_the_unread(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("low")
    await create_groups(client, keys)
    ids = [text(await client.xadd(stream, {"n": "j", "d": str(i)})) for i in range(6)]
    await read(client, stream, count=3)
    await client.xack(stream, GROUP, *ids[:3])
    await trim(client, stream)
    left = [text(e) for e, _ in await client.xrange(stream)]
    assert set(ids[3:]) <= set(left)
    assert ids[0] not in left and ids[1] not in left
    assert text(await client.xreadgroup(GROUP, "c2", {stream: ">"})) == [
        [stream, [[i, {"n": "j", "d": str(n + 3)}] for n, i in enumerate(ids[3:])]]]


async def test_trim_stream_slowest_group_decides(client: Any, keys: QueueKeys) -> None:
    stream = keys.level("high")
    await create_groups(client, keys)
    ids = [text(await client.xadd(stream, {"n": "j", "d": str(i)})) for i in range(4)]
    await read(client, stream, count=4)
    await client.xack(stream, GROUP, *ids)
    await client.xgroup_create(stream, "audit", id=ids[1])
    await trim(client, stream)
    left = [text(e) for e, _ in await client.xrange(stream)]
    assert ids[2:] == left[-2:]  # unread by "audit"
    await client.xgroup_create(stream, "late", id="0")
    assert await trim(client, stream) == 0


async def test_trim_stream_without_a_group_or_stream_is_a_no_op(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("normal")
    assert await trim(client, stream) == 0
    await client.xadd(stream, {"n": "j", "d": "1"})
    assert await trim(client, stream, "~") == 0
    assert await client.xlen(stream) == 1


# ------------------------------------------------------------------------ delete_consumer


async def delete_consumer(client: Any, keys: QueueKeys, consumer: str) -> int:
    return int(await scripts.call(client, scripts.DELETE_CONSUMER, list(keys.streams),
                                  [GROUP, consumer]))


async def consumers(client: Any, stream: str) -> set[str]:
    return {text(c["name"]) for c in await client.xinfo_consumers(stream, GROUP)}


async def test_delete_consumer_refuses_while_it_holds_pending(
    client: Any, keys: QueueKeys
) -> None:
    await create_groups(client, keys)
    low = keys.level("low")
    entry = text(await client.xadd(low, {"n": "j", "d": "1"}))
    await read(client, low, "busy")
    await read(client, keys.level("high"), "busy")  # registers it on another stream too
    assert await delete_consumer(client, keys, "busy") == 0
    assert await pending_ids(client, low, "busy") == [entry]
    assert "busy" in await consumers(client, low)

    await client.xack(low, GROUP, entry)
    assert await delete_consumer(client, keys, "busy") == 1
    for stream in keys.streams:
        assert "busy" not in await consumers(client, stream)


async def test_delete_consumer_of_an_unknown_consumer(client: Any, keys: QueueKeys) -> None:
    await create_groups(client, keys)
    assert await delete_consumer(client, keys, "never-seen") == 1


async def test_delete_consumer_skips_a_level_stream_without_the_group(
    client: Any, keys: QueueKeys
) -> None:
    await client.xgroup_create(keys.level("normal"), GROUP, id="0", mkstream=True)
    await client.xadd(keys.level("high"), {"n": "j", "d": "1"})  # stream, but no group yet
    assert await delete_consumer(client, keys, "gone") == 1


# ----------------------------------------------------------------------------- retry_dead


async def test_retry_dead_puts_jobs_back_with_fresh_attempts(
    client: Any, keys: QueueKeys
) -> None:
    await create_groups(client, keys)
    high, low = keys.level("high"), keys.level("low")
    first = text(await client.xadd(high, {"n": "first", "d": "1"}))
    third = text(await client.xadd(low, {"n": "third", "d": "2", "i": "pay_3", "a": "3",
                                          "t": "1700000000000"}))
    await read(client, high)
    await read(client, low)
    dead_first = text(await scripts.call(
        client, scripts.MOVE_TO_DEAD, dead_keys(keys, high),
        dead_args(first, f"high:{first}", ["n", "first", "d", "1"], level="high")))
    dead_third = text(await scripts.call(
        client, scripts.MOVE_TO_DEAD, dead_keys(keys, low),
        dead_args(third, "pay_3", ["n", "third", "d", "2", "i", "pay_3", "a", "3",
                                   "t", "1700000000000"], level="low")))
    malformed = text(await client.xadd(keys.dead, {"x:reason": "malformed", "x:level": "high",
                                                    "payload": "?"}))
    unknown_level = text(await client.xadd(keys.dead, {"x:level": "gone", "n": "orphan",
                                                        "d": "0", "i": "o1"}))
    await client.delete(keys.events)

    moved = await scripts.call(
        client, scripts.RETRY_DEAD, [keys.dead, keys.events, keys.where, *keys.streams],
        ["1", EVENTS_MAXLEN, len(keys.levels), *keys.levels,
         dead_first, dead_third, malformed, unknown_level, "1-1"])

    assert moved == 3
    assert [text(e) for e, _ in await client.xrange(keys.dead)] == [malformed]
    back_first = (await client.xrange(high, min=f"({first}"))[0]
    job = decode_job(back_first[0], back_first[1], keys.queue, "high")
    assert (job.id, job.name, job.attempt) == (f"high:{first}", "first", 1)
    assert not any(k.startswith(b"x:") for k in back_first[1])
    back_third = (await client.xrange(low, min=f"({third}"))[0]
    job = decode_job(back_third[0], back_third[1], keys.queue, "low")
    assert (job.id, job.attempt, job.enqueued_ms) == ("pay_3", 1, 1700000000000)
    [(_, orphan)] = await client.xrange(keys.level("normal"))
    assert text(orphan)["i"] == "o1"
    assert [(e["e"], e["i"], e["from"]) for e in await events(client, keys)] == [
        ("waiting", f"high:{first}", "dead"), ("waiting", "pay_3", "dead"),
        ("waiting", "o1", "dead")]


# ------------------------------------------------------------------------ requeue_stalled


async def requeue(client: Any, keys: QueueKeys, stream: str, min_idle: int) -> int:
    return int(await scripts.call(client, scripts.REQUEUE_STALLED, [stream, keys.where],
                                  [GROUP, "streamflow-cli", min_idle, 100, "normal", NORMAL]))


async def test_requeue_stalled_puts_idle_entries_back_for_any_worker(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    stale = text(await client.xadd(stream, {"n": "stale", "d": "1", "i": "s1"}))
    busy = text(await client.xadd(stream, {"n": "busy", "d": "2"}))
    await read(client, stream)
    await client.xclaim(stream, GROUP, "c1", 0, [stale], idle=100_000)

    assert await requeue(client, keys, stream, 60_000) == 1

    assert await pending_ids(client, stream) == [busy]
    entries = await client.xrange(stream)
    assert text(entries[-1][1]) == {"n": "stale", "d": "1", "i": "s1"}
    assert await read(client, stream, "c2") == [text(entries[-1][0])]
    assert "streamflow-cli" not in await consumers(client, stream)


async def test_requeue_stalled_keeps_the_job_id_and_enqueue_time(
    client: Any, keys: QueueKeys
) -> None:
    stream = keys.level("normal")
    await create_groups(client, keys)
    entry = await client.xadd(stream, {"n": "job", "d": "1"})
    before = decode_job(entry, {b"n": b"job", b"d": b"1"}, keys.queue, "normal")
    await read(client, stream)
    assert await requeue(client, keys, stream, 0) == 1
    new_id, fields = (await client.xrange(stream))[-1]
    after = decode_job(new_id, fields, keys.queue, "normal")
    assert (after.id, after.enqueued_ms) == (before.id, before.enqueued_ms)


# --------------------------------------------------------------------- registry, NOSCRIPT


def test_every_lua_file_is_registered_with_its_key_count() -> None:
    files = {entry.name for entry in resources.files("streamflow.lua").iterdir()
             if entry.name.endswith(".lua")}
    assert {f"{s.name}-{s.nkeys}.lua" for s in scripts.SCRIPTS.values()} == files
    for script in scripts.SCRIPTS.values():
        header = script.body.split("]]", 1)[0]
        assert header.startswith("--[[")
        for section in ("Returns", "Events"):
            assert re.search(rf"^\s*{section}\b", header, re.M), (script.name, section)


@pytest.mark.parametrize(
    "script, nkeys",
    [
        (scripts.TRIM_STREAM, 0),
        (scripts.TRIM_STREAM, 2),
        (scripts.RETRY_LATER, 3),
        (scripts.MOVE_TO_DEAD, 4),
        (scripts.ADD_JOBS, 3),
        (scripts.RETRY_DEAD, 1),
    ],
)
async def test_wrong_key_count_raises_value_error_before_sending(
    client: Any, script: scripts.Script, nkeys: int
) -> None:
    with pytest.raises(ValueError, match=f"{script.name} takes .* keys, got {nkeys}"):
        await scripts.call(client, script, [f"k{i}" for i in range(nkeys)], [])


async def test_variadic_scripts_accept_more_keys(client: Any, keys: QueueKeys) -> None:
    command = scripts.FETCH_JOBS.command([keys.meta, keys.limiter, *keys.streams],
                                         [GROUP, "c", 1, 0])
    assert command[:3] == ("FCALL", scripts.FETCH_JOBS.function, 5)
    with pytest.raises(ValueError, match="at least 2 keys, got 1"):
        scripts.FETCH_JOBS.command([keys.meta], [])


FLUSH = {"evalsha": ("SCRIPT", "FLUSH"), "fcall": ("FUNCTION", "FLUSH")}


async def loaded(client: Any, mode: str) -> bool:
    if mode == "evalsha":
        return bool((await client.script_exists(scripts.FETCH_JOBS.sha))[0])
    return bool(await client.function_list(library=scripts.LIBRARY.name))


async def test_call_recovers_from_a_flush(client: Any, keys: QueueKeys, mode: str) -> None:
    await create_groups(client, keys)
    await client.xadd(keys.level("normal"), {"n": "j", "d": "1"})
    await client.execute_command(*FLUSH[mode])
    assert not await loaded(client, mode)
    reply = text(await fetch(client, keys, 1))
    assert reply[0] == NORMAL and len(reply[1]) == 1
    assert await loaded(client, mode)


async def test_pipeline_recovers_from_a_flush(client: Any, keys: QueueKeys, mode: str) -> None:
    await create_groups(client, keys)
    stream = keys.level("high")
    entry = text(await client.xadd(stream, {"n": "j", "d": "1"}))
    await read(client, stream)
    await client.execute_command(*FLUSH[mode])
    results = await scripts.pipeline(client, [
        ("SET", f"{keys.base}:probe", "1"),
        scripts.COMPLETE_JOBS.command(complete_keys(keys, stream),
                                      complete_args(10, [(entry, "j", "")])),
        scripts.TRIM_STREAM.command([stream], ["="]),
    ])
    assert results[0] in (True, b"OK")
    assert results[1:] == [1, 0]  # acked; nothing older than the last delivered to trim
    assert await pending_ids(client, stream) == []
    assert await client.xlen(keys.done) == 1  # sent again once, not twice
    await client.delete(f"{keys.base}:probe")


async def test_one_command_pipeline_recovers_from_a_flush(client: Any, keys: QueueKeys,
                                                          mode: str) -> None:
    await create_groups(client, keys)
    await client.execute_command(*FLUSH[mode])
    results = await scripts.pipeline(client, [scripts.TRIM_STREAM.command(
        [keys.level("low")], ["="])])
    assert results == [0]
    assert await loaded(client, mode)


async def test_pipeline_returns_script_errors_in_place(client: Any, keys: QueueKeys) -> None:
    results = await scripts.pipeline(client, [
        scripts.FETCH_JOBS.command([keys.meta, keys.limiter, *keys.streams],
                                   [GROUP, "c", 1, now_ms()]),
        ("PING",),
    ])
    assert "NOGROUP" in str(results[0])
    assert results[1] is True
    assert await scripts.pipeline(client, []) == []


def test_only_scripts_declaring_codes_raise_on_negative_results() -> None:
    coded = {name for name, script in scripts.SCRIPTS.items() if script.coded}
    assert {"retry_later", "move_to_dead"} <= coded
    assert "fetch_jobs" not in coded  # -W there means "rate limited, wait W ms"
    assert scripts.FETCH_JOBS.check(-250) == -250


async def test_script_error_names_the_script_and_code() -> None:
    with pytest.raises(ScriptError, match="move_to_dead: not_pending"):
        scripts.MOVE_TO_DEAD.check(-2)
    assert scripts.MOVE_TO_DEAD.check(0) == 0
    assert scripts.MOVE_TO_DEAD.check(b"1-0") == b"1-0"
    assert pairs([b"a", b"b"]) == {b"a": b"b"}
