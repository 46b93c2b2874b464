"""``streamflow demo`` (``make run``): a real pipeline on a local Redis, printed as a table.

It uses the Redis of the settings, or starts a throwaway ``redis-server`` when none answers;
enqueues a mix (priorities, a delayed job, a flaky job that succeeds on its third attempt, a job
that exhausts its attempts, a discarded job, a refused duplicate, a malformed entry written by
hand); runs worker processes; and prints what happened to every job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any

import anyio
import orjson

from .backoff import Backoff
from .cli._output import table
from .connection import redact
from .errors import Discard
from .events import QueueEvents
from .job import Job
from .localredis import local_redis
from .queue import JobSpec, Queue
from .router import Router
from .settings import StreamflowSettings

router = Router()


@router.handler("payment.captured")
async def payment_captured(job: Job) -> dict[str, Any]:
    await anyio.sleep(0.02)
    return {"worker": os.getpid(), "payment": job.data["id"]}


@router.handler("email.send")
async def email_send(job: Job) -> dict[str, Any]:
    await anyio.sleep(0.02)
    return {"worker": os.getpid()}


@router.handler("report.build")
def report_build(job: Job) -> dict[str, Any]:
    time.sleep(0.02)  # a plain function: runs in a worker thread
    return {"worker": os.getpid()}


@router.handler("reminder.send")
async def reminder_send(job: Job) -> dict[str, Any]:
    return {"worker": os.getpid(), "late_by_ms": int(time.time() * 1000) - job.data["due_ms"]}


@router.handler("provider.flaky")
async def provider_flaky(job: Job) -> dict[str, Any]:
    if job.attempt < 3:
        raise ConnectionError(f"provider timed out (attempt {job.attempt})")
    return {"worker": os.getpid()}


@router.handler("provider.down")
async def provider_down(job: Job) -> None:
    raise ConnectionError("provider answered 503")


@router.handler("refund.invalid")
async def refund_invalid(job: Job) -> None:
    raise Discard("refund amount exceeds the captured amount")


def run_demo(settings: StreamflowSettings, *, workers: int = 2) -> int:
    """Run the demo; returns the exit code."""
    with ExitStack() as stack:
        url, started = local_redis(settings.redis.url, stack)
        if started:
            print(f"no Redis at {redact(settings.redis.url)}: started one at {url}")
        else:
            print(f"using Redis at {redact(url)}")
        demo_settings = settings.model_copy(deep=True)
        demo_settings.redis.url = url
        demo_settings.queue.backoff_delay = 0.2
        return anyio.run(_demo, demo_settings, workers)
    return 1


async def _demo(settings: StreamflowSettings, workers: int) -> int:
    queue_name = f"demo-{os.urandom(3).hex()}"
    async with Queue(queue_name, settings=settings) as q:
        plan = await _enqueue(q)
        expected = sum(1 for outcome in plan.values() if outcome != "refused")
        print(f"queue {queue_name}: {len(plan)} adds, {expected} jobs expected to finish; "
              f"starting {workers} worker processes")
        env = {**os.environ, "STREAMFLOW_REDIS_URL": settings.redis.url,
               "STREAMFLOW_PREFIX": settings.prefix, "STREAMFLOW_QUEUE__BACKOFF_DELAY": "0.2"}
        procs = [subprocess.Popen(  # noqa: ASYNC220 - started once, never awaited
            [sys.executable, "-m", "streamflow", "worker", queue_name, "--app",
             "streamflow.demo:router", "--concurrency", "4", "--consumer", f"worker-{i + 1}",
             "--log-level", "WARNING"], env=env) for i in range(workers)]
        try:
            history = await _follow(settings, queue_name, expected, timeout=60)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
        counts = await q.counts()
        dead = await q.dead()
        done = await q.client.xrange(q.keys.done)
        await q.obliterate(force=True)
    _report(plan, history, dead, done, counts)
    finished = sum(1 for h in history.values() if h["outcome"] in ("completed", "dead"))
    return 0 if finished == expected else 1


async def _enqueue(q: Queue) -> dict[str, str]:
    plan: dict[str, str] = {}
    low = [JobSpec("report.build", {"report": f"daily-{i}"}, priority="low") for i in range(4)]
    normal = [JobSpec("email.send", {"to": f"user{i}@example.com"}) for i in range(6)]
    high = [JobSpec("payment.captured", {"id": f"pay_{i}"}, priority="high") for i in range(6)]
    for spec, job_id in zip(low + normal + high, await q.add_bulk(low + normal + high),
                            strict=True):
        plan[str(job_id)] = spec.priority or "normal"
    first = await q.add("payment.captured", {"id": "pay_evt1"}, priority="high", job_id="evt_1")
    again = await q.add("payment.captured", {"id": "pay_evt1"}, priority="high", job_id="evt_1")
    plan[str(first)] = "high"
    plan["evt_1 (again)"] = "refused" if again is None else "high"
    due_ms = int(time.time() * 1000) + 1500
    plan[str(await q.add("reminder.send", {"due_ms": due_ms}, delay=1.5))] = "normal"
    plan[str(await q.add("provider.flaky", {}, attempts=3, backoff=Backoff.fixed(0.2)))] = "normal"
    plan[str(await q.add("provider.down", {}, attempts=2, backoff=Backoff.fixed(0.2)))] = "normal"
    plan[str(await q.add("refund.invalid", {"refund": "rfnd_9"}, priority="high"))] = "high"
    malformed = await q.client.xadd(q.keys.level("normal"), {"garbage": "not an envelope"})
    plan[f"normal:{malformed.decode()}"] = "normal"
    return plan


async def _follow(settings: StreamflowSettings, queue: str, expected: int,
                  timeout: float) -> dict[str, dict[str, Any]]:
    history: dict[str, dict[str, Any]] = {}
    finished = 0
    async with QueueEvents(queue, settings=settings, since="0") as events:
        with anyio.move_on_after(timeout):
            async for event in events:
                job_id = event.job_id or event.fields.get("i", "")
                record = history.setdefault(job_id, {"outcome": "waiting", "attempts": 0,
                                                     "order": None, "note": ""})
                if "n" in event.fields:
                    record["name"] = event.fields["n"]
                if event.name == "completed":
                    record.update(outcome="completed", order=finished + 1,
                                  ms=event.fields.get("ms"))
                    record["attempts"] += 1
                    finished += 1
                elif event.name == "retrying":
                    record["attempts"] += 1
                    record["note"] = event.fields.get("err", "")
                elif event.name == "dead":
                    record.update(outcome="dead", order=finished + 1,
                                  note=f"{event.fields.get('reason')}: {event.fields.get('err')}")
                    record["attempts"] += 1
                    finished += 1
                elif event.name == "delayed":
                    record["note"] = "delayed 1.5s"
                if finished >= expected:
                    break
    return history


def _report(plan: dict[str, str], history: dict[str, dict[str, Any]], dead: list[Any],
            done: list[Any], counts: Any) -> None:
    results = {fields[b"i"].decode(): orjson.loads(fields[b"r"]) if fields.get(b"r") else None
               for _, fields in done}
    dead_by_src = {d["entry_id"]: d for d in dead}
    names = {d["job_id"]: d["name"] or "(malformed)" for d in dead}
    rows = []
    for job_id, level in plan.items():
        record = history.get(job_id, {"outcome": "refused" if level == "refused" else "?",
                                      "attempts": 0, "order": None, "note": ""})
        if level == "refused":
            record = {**record, "outcome": "refused", "note": "duplicate job id evt_1"}
        result = results.get(job_id) or {}
        worker = result.get("worker", "") if isinstance(result, dict) else ""
        name = record.get("name") or names.get(job_id) or next(
            (d["name"] or "(malformed)" for d in dead_by_src.values() if d["entry_id"] == job_id),
            "")
        rows.append([record["order"] or "-", job_id, name, level, record["outcome"],
                     record["attempts"] or "-", worker, record["note"][:48]])
    rows.sort(key=lambda row: (row[0] == "-", row[0] if row[0] != "-" else 0))
    print()
    print(table(["#", "job id", "name", "priority", "outcome", "attempts", "worker pid",
                 "note"], rows))
    outcomes = Counter(row[4] for row in rows)
    print()
    print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    print(f"dead letters: {len(dead)} ("
          + ", ".join(f"{d['reason']}" for d in dead) + ")")
    print(f"left waiting: {counts['waiting']}, pending: {counts['pending']}, "
          f"delayed: {counts['delayed']}")
