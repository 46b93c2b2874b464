"""Where the Redis time of an add goes: each step of the add script alone.

    python -m benchmarks.add_profile URL [--ops 20000] [--depth 100] [--repeat 3]

Each variant sends ``--ops`` commands from one client, ``--depth`` per pipeline (100 by
default: the cost of a round trip is spread, what remains is the command's own work; the PING
row at depth 1 shows what one round trip costs the server). ``cpu us`` is the server's CPU
(INFO cpu, user + sys: time on the CPU, not wall time, so little disturbed by the other
processes of a shared machine) per command; ``exec us`` is INFO commandstats' usec_per_call
(wall time inside the command; a script's includes the commands it calls). Lowest of
``--repeat`` tries. The server must be private.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import orjson
import redis.asyncio as aioredis

from benchmarks.common import PAYLOAD, redis_cpu_s
from streamflow import JobSpec, Queue, StreamflowSettings, scripts

LUA_XADD = "return redis.call('XADD', KEYS[1], '*', unpack(ARGV))"
LUA_XADD_EVENT = """
local id = redis.call('XADD', KEYS[1], '*', 'n', ARGV[1], 'd', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'e', 'added', 'i', 'normal:' .. id,
  'n', ARGV[1])
return id
"""
LUA_CJSON = "local t = cjson.decode(ARGV[1]); return #cjson.encode(t)"

Make = Callable[[int], tuple[Any, ...]]


def add_variants(q: Queue, label: str, tag: str, depth: int) -> list[tuple[str, Make, int]]:
    """The add script as ``Queue.add`` calls it: one job or 100, plain or with a job_id."""
    producer = q._enqueuer
    plain = producer.prepare(JobSpec("noop", PAYLOAD), 0)
    single = producer.command([plain], "prof", "", 0)
    hundred = producer.command([plain] * 100, "prof", "", 0)

    def with_reply(i: int) -> tuple[Any, ...]:
        return producer.command([plain], "prof", uuid.uuid4().hex[:16], 0)

    def keyed(i: int, n: int = 1) -> tuple[Any, ...]:
        jobs = [producer.prepare(JobSpec("noop", PAYLOAD, job_id=f"{tag}-{i}-{k}-{q.name}"), 0)
                for k in range(n)]
        return producer.command(jobs, "prof", uuid.uuid4().hex[:16], 0)

    few = max(1, depth // 100)
    return [
        (f"add_jobs script, 1 job, {label}", lambda i: single, depth),
        (f"add_jobs script, 1 job + reply record, {label}", with_reply, depth),
        (f"add_jobs script, 1 job with job_id, {label}", keyed, depth),
        (f"add_jobs script, 100 jobs (per job), {label}", lambda i: hundred, few),
        (f"add_jobs script, 100 jobs with job_id (per job), {label}",
         lambda i: keyed(i, 100), few),
    ]


async def measure(client: Any, label: str, make: Make, ops: int, depth: int,
                  repeat: int) -> dict[str, Any]:
    best_exec = best_cpu = float("inf")
    name = str(make(0)[0]).lower()
    for _ in range(repeat):
        await client.config_resetstat()
        before = await redis_cpu_s(client)
        for start in range(0, ops, depth):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(ops, start + depth)):
                pipe.execute_command(*make(i))
            await pipe.execute()
        best_cpu = min(best_cpu, (await redis_cpu_s(client) - before) / ops * 1e6)
        stats = await client.info("commandstats")
        best_exec = min(best_exec, float(stats[f"cmdstat_{name}"]["usec_per_call"]))
    return {"variant": label, "depth": depth, "exec_us": best_exec, "cpu_us": best_cpu}


async def main(url: str, ops: int, depth: int, repeat: int) -> None:
    client = aioredis.Redis.from_url(url)
    data = orjson.dumps(PAYLOAD)
    empty = await client.script_load("return 1")
    xadd = await client.script_load(LUA_XADD)
    both = await client.script_load(LUA_XADD_EVENT)
    cjson = await client.script_load(LUA_CJSON)
    await scripts.load_scripts(client)
    keys = ["prof:d", "prof:j", "prof:e", "prof:h", "prof:n", "prof:l"]
    args = [1, 3, 1, 10000, 86400000, "high", "normal", "low", 1, 0, 0, 0, "", "", "noop", 4,
            "n", "noop", "d", data]
    variants: list[tuple[str, Make, int]] = [
        ("PING, one per round trip", lambda i: ("PING",), 1),
        ("PING", lambda i: ("PING",), depth),
        ("bare XADD (n, d)", lambda i: ("XADD", "prof:bare", "*", "n", "noop", "d", data), depth),
        ("EVALSHA return 1, no args", lambda i: ("EVALSHA", empty, 0), depth),
        ("EVALSHA return 1, add's 6 keys + 20 args",
         lambda i: ("EVALSHA", empty, 6, *keys, *args), depth),
        ("EVALSHA XADD only",
         lambda i: ("EVALSHA", xadd, 1, "prof:x", "n", "noop", "d", data), depth),
        ("EVALSHA XADD + added event",
         lambda i: ("EVALSHA", both, 2, "prof:y", "prof:ev", "noop", data), depth),
        ("EVALSHA cjson decode+encode of the payload",
         lambda i: ("EVALSHA", cjson, 0, data), depth),
    ]
    tag = uuid.uuid4().hex[:6]
    queues = []
    for events in ("all", "none"):
        settings = StreamflowSettings.from_url(url, prefix="prof")
        settings.queue.events = events  # type: ignore[assignment]
        q = Queue(f"prof-{events}", settings=settings)
        queues.append(q)
        variants += add_variants(q, f"events={events}", tag, depth)
    rows = []
    for label, make, d in variants:
        row = await measure(client, label, make, ops if "100 jobs" not in label else ops // 100,
                            d, repeat)
        if "100 jobs" in label:
            row["exec_us"] /= 100
            row["cpu_us"] /= 100
        rows.append(row)
    for q in queues:
        await q.obliterate(force=True)
        await q.close()
    await client.delete("prof:bare", "prof:x", "prof:y", "prof:ev")
    await client.aclose()
    width = max(len(r["variant"]) for r in rows)
    print(f"{'variant':{width}}  depth  exec us  cpu us")
    for r in rows:
        print(f"{r['variant']:{width}}  {r['depth']:5d}  {r['exec_us']:7.2f}  {r['cpu_us']:6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.url, args.ops, args.depth, args.repeat)
