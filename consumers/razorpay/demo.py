"""``streamflow-razorpay demo`` (``make run``): the payment pipeline end to end on this machine.

What runs, all of it real:

- Redis: the one at ``STREAMFLOW_REDIS_URL`` / ``REDIS_URL`` (default ``127.0.0.1:6379``) when it
  answers, else a throwaway ``redis-server`` on a free port (``streamflow.demo``'s helpers);
- the ingress (``streamflow-razorpay ingress``) as a uvicorn subprocess on a free loopback port;
- two ledger workers (``streamflow-razorpay worker``) sharing one temporary SQLite ledger (WAL,
  busy timeout ``RAZORPAY_DB_LOCK_TIMEOUT``: the two processes take turns to write);
- a unique queue (``razorpay-demo-<hex>``) whose keys are deleted at the end
  (``Queue.obliterate``), as is the temporary directory with the ledger and the process logs.

What is sent, over HTTP with real HMAC signatures:

1. *lock drill*: the demo takes SQLite's write lock (``BEGIN IMMEDIATE`` on the ledger file,
   what a backup or a migration does) and sends one webhook. The worker waits out the busy
   timeout, gets "database is locked" (``LedgerUnavailable``) and answers ``Retry``; the demo
   sees the ``retrying`` event, releases the lock, and the second attempt applies the event.
   No fault injection: the lock is real.
2. *burst*: checkouts (authorized, captured, order.paid), a failed payment, a partial, a full
   and a failed refund, a subscription, a settlement, a dispute, an event type the ledger does
   not track (recorded only); some sent out of order (captured before authorized, refund
   processed before created); Razorpay re-deliveries (same event id: refused by the dedup
   mark); a forged signature and a body that is not JSON (both 400); one signed event without
   the entity its type needs (the handler raises ``Discard``: dead-lettered at once).
3. *late re-delivery*: one event re-sent after its dedup mark is gone (as after the 24 h TTL):
   enqueued again, and the ledger's ``applied_events`` makes it change nothing.
4. *ordered* (``ordered_demo``): an order-dependent handler, the payment journal, on a queue of
   4 partitions ordered by payment id: many payments' lifecycles added at once, 4 workers,
   every payment's transitions applied in order (added to Redis directly: the ingress does not
   key events by payment).

Then it waits (bounded) until every accepted job is finished (completed or dead, nothing
waiting, pending or delayed), stops the workers with SIGTERM and prints the summary. Exit code
0 when every accepted webhook was processed, 1 otherwise (with the tails of the process logs).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

from streamflow import Queue, QueueEvents, StreamflowSettings
from streamflow.cli._output import table
from streamflow.connection import redact
from streamflow.inspect import DeadEntry, QueueCounts
from streamflow.localredis import free_port, local_redis

from .ingress import WEBHOOK_PATH
from .ordered_demo import run_ordered
from .sample import (
    Event,
    SignedWebhook,
    dispute_event,
    envelope,
    new_id,
    order_paid_event,
    payment_event,
    refund_event,
    settlement_event,
    sign_event,
    subscription_event,
)
from .settings import RazorpaySettings
from .signature import sign
from .store import open_ledger
from .tables import TABLES

LOCK_TIMEOUT = 1.0
"""``RAZORPAY_DB_LOCK_TIMEOUT`` of the demo workers: how long the lock drill's write waits."""
RETRY_DELAY = 0.5
"""``RAZORPAY_DB_RETRY_DELAY`` of the demo workers."""
CHECKOUTS = 12
OUT_OF_ORDER = 3
"""Deliveries sent before the event they follow: two captures, one refund."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One HTTP request the demo sends."""

    kind: str
    """original, re-delivery, forged signature, not JSON, poison, late re-delivery."""
    event: str
    event_id: str
    body: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, hook: SignedWebhook, kind: str = "original") -> Delivery:
        return cls(kind, hook.event, hook.event_id, hook.body, hook.headers())


@dataclass
class Answers:
    """What the ingress answered, per delivery."""

    rows: Counter[tuple[int, str]] = field(default_factory=Counter)
    """(HTTP status, answer) -> requests."""
    levels: dict[str, str] = field(default_factory=dict)
    """event id -> priority level of the accepted ones."""
    accepted: int = 0
    duplicates: int = 0
    refused: int = 0
    sent: int = 0

    def record(self, delivery: Delivery, response: httpx.Response) -> str:
        self.sent += 1
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            answer = {}
        text = str(answer.get("status") or answer.get("error") or response.reason_phrase)
        self.rows[(response.status_code, text)] += 1
        if response.status_code == 200 and answer.get("status") == "queued":
            self.accepted += 1
            self.levels[delivery.event_id] = str(answer.get("priority"))
        elif response.status_code == 200:
            self.duplicates += 1
        else:
            self.refused += 1
        return text


@dataclass
class Tracker:
    """The queue's lifecycle events, as they come (``QueueEvents`` from the queue's start)."""

    events: QueueEvents
    finished: Counter[str] = field(default_factory=Counter)
    """job id -> completed or dead events (a late re-delivery finishes twice)."""
    names: dict[str, str] = field(default_factory=dict)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(job id, completed | dead) -> events."""
    retries: list[tuple[str, str]] = field(default_factory=list)
    """(job id, error) of every ``retrying`` event."""

    async def pump(self, block_ms: int = 200) -> None:
        for event in await self.events.read(500, block_ms):
            job_id = event.job_id or ""
            if "n" in event.fields:
                self.names.setdefault(job_id, event.fields["n"])
            if event.name in ("completed", "dead"):
                self.finished[job_id] += 1
                self.outcomes[(job_id, event.name)] += 1
            elif event.name == "retrying":
                self.retries.append((job_id, event.fields.get("err", "")))

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            while not done():
                await self.pump()
            return True
        return False


# ------------------------------------------------------------------------ the deliveries


def _checkout(rng: random.Random, secret: str, at: int, *, fail: bool = False,
              captured_first: bool = False) -> tuple[str, list[SignedWebhook]]:
    payment_id, order_id = new_id("pay", rng), new_id("order", rng)
    amount = rng.choice((19_900, 49_900, 99_900, 250_000))
    events = [payment_event("payment.authorized", payment_id, amount=amount, order_id=order_id,
                            created_at=at)]
    if fail:
        events.append(payment_event("payment.failed", payment_id, amount=amount,
                                    order_id=order_id, created_at=at + 1, entity_created_at=at))
    else:
        captured = payment_event("payment.captured", payment_id, amount=amount,
                                 order_id=order_id, created_at=at + 1, entity_created_at=at)
        events.insert(0 if captured_first else 1, captured)
        events.append(order_paid_event(order_id, payment_id, amount=amount, created_at=at + 1,
                                       entity_created_at=at))
    return payment_id, [sign_event(event, secret, new_id(rng=rng)) for event in events]


def _refund(rng: random.Random, secret: str, payment_id: str, payment_amount: int,
            amount: int, at: int, final: str, *,
            final_first: bool = False) -> list[SignedWebhook]:
    refund_id = new_id("rfnd", rng)
    events = [refund_event(name, refund_id, payment_id, amount=amount,
                           payment_amount=payment_amount, created_at=created,
                           entity_created_at=at, payment_created_at=at - 600)
              for name, created in (("refund.created", at), (final, at + 60))]
    if final_first:
        events.reverse()
    return [sign_event(event, secret, new_id(rng=rng)) for event in events]


def plan(secret: str, seed: int = 7) -> tuple[Delivery, list[Delivery], Delivery]:
    """The lock drill's delivery, the burst, and the late re-delivery (all signed)."""
    rng = random.Random(seed)
    start = int(time.time()) - 3600
    payments: list[tuple[str, int]] = []
    burst: list[Delivery] = []
    for i in range(CHECKOUTS):
        payment_id, hooks = _checkout(rng, secret, start + 10 * i, captured_first=i in (1, 4))
        payments.append((payment_id, orjson.loads(hooks[0].body)["payload"]["payment"]
                         ["entity"]["amount"]))
        burst += [Delivery.of(hook) for hook in hooks]
    drill, burst = burst[0], burst[1:]  # checkout 0's payment.authorized meets the lock
    _, failed = _checkout(rng, secret, start + 200, fail=True)
    burst += [Delivery.of(hook) for hook in failed]
    for (payment_id, amount), final, share, reverse in (
            (payments[0], "refund.processed", 2, False),   # partial
            (payments[2], "refund.processed", 1, True),    # full, processed before created
            (payments[3], "refund.failed", 1, False)):
        burst += [Delivery.of(hook) for hook in _refund(
            rng, secret, payment_id, amount, amount // share, start + 600, final,
            final_first=reverse)]
    subscription_id = new_id("sub", rng)
    for name, at, paid in (("subscription.activated", start + 300, 0),
                           ("subscription.charged", start + 330, 1)):
        burst.append(Delivery.of(sign_event(subscription_event(
            name, subscription_id, paid_count=paid, created_at=at), secret, new_id(rng=rng))))
    others: list[Event] = [
        settlement_event(new_id("setl", rng), created_at=start + 900),
        dispute_event("payment.dispute.created", new_id("disp", rng), payments[5][0],
                      amount=payments[5][1], created_at=start + 1200),
        envelope("invoice.paid", {"invoice": {"id": new_id("inv", rng), "entity": "invoice",
                                              "status": "paid", "amount": 99_900}},
                 start + 1300),
    ]
    burst += [Delivery.of(sign_event(event, secret, new_id(rng=rng))) for event in others]

    # Razorpay re-deliveries: same event id, same body, right after the original.
    for index in sorted((3, 8, 14, 30, len(burst) - 2), reverse=True):
        original = burst[index]
        burst.insert(index + 1, Delivery("re-delivery", original.event, original.event_id,
                                         original.body, original.headers))
    forged = sign_event(payment_event("payment.captured", payments[7][0], amount=1,
                                      created_at=start + 2000), "not-the-secret")
    burst.insert(10, Delivery.of(forged, "forged signature"))
    truncated = b'{"entity":"event","event":"payment.captured","payload":{"payment":'
    broken = SignedWebhook(new_id(rng=rng), "payment.captured", truncated,
                           sign(truncated, secret))
    burst.insert(20, Delivery.of(broken, "not JSON"))
    poison = envelope("payment.captured", {}, start + 2100)
    burst.insert(26, Delivery.of(sign_event(poison, secret, new_id(rng=rng)), "poison"))
    late = next(d for d in burst if d.kind == "original" and d.event == "payment.captured")
    return drill, burst, Delivery("late re-delivery", late.event, late.event_id, late.body,
                                  late.headers)



# ------------------------------------------------------------------------- the processes


@dataclass
class Pipeline:
    """The subprocesses of one run and where they log."""

    folder: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "consumers.razorpay.cli", *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def died(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, *names: str) -> dict[str, int]:
        """SIGTERM, then wait (SIGKILL after 15 s); the exit codes."""
        for name in names:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for name in names:
            proc = self.procs[name]
            try:
                codes[name] = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    def stop_all(self) -> None:
        self.stop(*self.procs)

    def tails(self, lines: int = 15) -> str:
        out = []
        for name in self.procs:
            text = (self.folder / f"{name}.log").read_text(errors="replace").splitlines()
            out.append(f"--- {name} (last {lines} log lines)")
            out += text[-lines:]
        return "\n".join(out)


def _wait(what: str, check: Callable[[], bool], pipeline: Pipeline, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if pipeline.died():
            raise RuntimeError(f"{', '.join(pipeline.died())} exited before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run_demo(settings: StreamflowSettings | None = None, *, workers: int = 2,
             timeout: float = 30.0) -> int:
    """Run the demo (see the module docstring); returns the exit code."""
    settings = settings or StreamflowSettings()
    started = time.monotonic()
    with ExitStack() as stack:
        url, started_here = local_redis(settings.redis.url, stack)
        if started_here:
            print(f"redis     none at {redact(settings.redis.url)}: started redis-server at {url}")
        else:
            print(f"redis     {redact(url)} (answers: used as is)")
        sf = settings.model_copy(deep=True)
        sf.redis.url = sf.redis_url = url
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="streamflow-razorpay-demo-")))
        secret = f"whsec_demo_{os.urandom(8).hex()}"
        queue = f"razorpay-demo-{os.urandom(3).hex()}"
        ledger_path = folder / "ledger.sqlite3"
        razorpay = RazorpaySettings(webhook_secret=secret, queue=queue,
                                    database_url=f"sqlite:///{ledger_path}",
                                    db_lock_timeout=LOCK_TIMEOUT, db_retry_delay=RETRY_DELAY)
        anyio.run(_create_schema, razorpay)  # WAL mode set once, before two processes race
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAZORPAY_") and k != "DATABASE_URL"}
        env.update({
            "STREAMFLOW_REDIS_URL": url, "STREAMFLOW_PREFIX": sf.prefix,
            "STREAMFLOW_QUEUE__EVENTS": "all", "STREAMFLOW_WORKER__SHUTDOWN_GRACE": "5",
            "STREAMFLOW_WORKER__BLOCK_MS": "500",
            "RAZORPAY_WEBHOOK_SECRET": secret, "RAZORPAY_QUEUE": queue,
            "DATABASE_URL": f"sqlite:///{ledger_path}",
            "RAZORPAY_DB_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
            "RAZORPAY_DB_RETRY_DELAY": str(RETRY_DELAY),
        })
        pipeline = Pipeline(folder, env)
        stack.callback(pipeline.stop_all)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        ingress = pipeline.start("ingress", "ingress", "--host", "127.0.0.1", "--port",
                                 str(port), "--log-level", "warning")
        names = [f"worker-{i + 1}" for i in range(workers)]
        pids = [pipeline.start(name, "worker", "--concurrency", "8", "--log-level",
                               "warning").pid for name in names]
        print(f"queue     {queue} (prefix {sf.prefix}), ledger {ledger_path.name} "
              f"(SQLite, WAL, busy timeout {LOCK_TIMEOUT:g}s) in {folder}")
        try:
            _wait("the ingress answers /readyz", lambda: _ready(base), pipeline, 20)
            print(f"ingress   {base}{WEBHOOK_PATH} (uvicorn, pid {ingress.pid})")
            _wait(f"{workers} workers register", lambda: anyio.run(
                _registered, sf, queue) >= workers, pipeline, 20)
            print(f"workers   {workers} processes (pids {', '.join(map(str, pids))}), "
                  "one ledger file")
            result = anyio.run(_exercise, sf, queue, base, secret, ledger_path, timeout)
        except RuntimeError as exc:
            print(f"error: {exc}")
            print(pipeline.tails())
            return 1
        codes = pipeline.stop(*names)
        pipeline.stop("ingress")
        report = anyio.run(_collect, sf, queue, ledger_path, razorpay.table_prefix)
        ok = _print_summary(result, report, codes, time.monotonic() - started)
        print()  # then a handler that is not order-tolerant, on an ordered queue
        ok = anyio.run(run_ordered, sf, razorpay, f"{queue}-ordered") and ok
        if not ok:
            print(pipeline.tails())
        return 0 if ok else 1
    return 1


async def _create_schema(settings: RazorpaySettings) -> None:
    async with open_ledger(settings):
        pass


async def _registered(settings: StreamflowSettings, queue: str) -> int:
    async with Queue(queue, settings=settings) as q:
        return int(await q.client.hlen(q.keys.workers))


@dataclass
class Result:
    answers: Answers
    tracker: Tracker
    drill: Delivery
    late: Delivery
    finished: bool
    elapsed: float
    burst_s: float


async def _exercise(settings: StreamflowSettings, queue: str, base: str, secret: str,
                    ledger_path: Path, timeout: float) -> Result:
    drill, burst, late = plan(secret)
    answers = Answers()
    started = time.monotonic()
    async with QueueEvents(queue, settings=settings, since="0") as events, \
            httpx.AsyncClient(base_url=base, timeout=10) as http, \
            Queue(queue, settings=settings) as q:
        tracker = Tracker(events)

        async def send(delivery: Delivery) -> str:
            response = await http.post(WEBHOOK_PATH, content=delivery.body,
                                       headers=delivery.headers)
            return answers.record(delivery, response)

        # 1. lock drill: a real SQLite write lock held while the event is processed
        lock = sqlite3.connect(ledger_path, timeout=5, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            await send(drill)
            retried = await tracker.until(
                lambda: any(job == drill.event_id for job, _ in tracker.retries), 10)
            lock.execute("ROLLBACK")
        finally:
            lock.close()
        print(f"drill     ledger write-locked while {drill.event} {drill.event_id} arrived: "
              + ("retried after 'database is locked', lock released" if retried
                 else "no retry seen within 10 s"))

        # 2. the burst, in order over one keep-alive connection
        burst_started = time.monotonic()
        for delivery in burst:
            await send(delivery)
        burst_s = time.monotonic() - burst_started
        kinds = Counter(d.kind for d in burst)
        print(f"burst     {len(burst)} requests in {burst_s:.2f}s: {_joined(kinds)}; "
              f"{OUT_OF_ORDER} out of order")

        async def all_done() -> bool:
            while True:
                if sum(tracker.finished.values()) >= answers.accepted:
                    counts = await q.counts()
                    if counts["waiting"] + counts["pending"] + counts["delayed"] == 0:
                        return True
                await tracker.pump()

        deadline = started + timeout
        finished = False
        with anyio.move_on_after(max(deadline - time.monotonic(), 0)):
            finished = await all_done()
        if finished:
            # 3. a re-delivery after the dedup mark expired (24 h TTL; deleted here)
            await q.client.delete(q.keys.status(late.event_id))
            await send(late)
            finished = False
            with anyio.move_on_after(max(deadline - time.monotonic(), 0)):
                finished = await all_done()
            print(f"late      {late.event} {late.event_id} re-sent after its dedup mark "
                  "expired: enqueued again, found in applied_events by the worker")
    return Result(answers, tracker, drill, late, finished, time.monotonic() - started, burst_s)


@dataclass
class Report:
    counts: QueueCounts
    dead: list[DeadEntry]
    results: Counter[str]
    ledger: dict[str, Counter[str]]
    refund_status: Counter[str]
    applied: int


async def _collect(settings: StreamflowSettings, queue: str, ledger_path: Path,
                   prefix: str) -> Report:
    async with Queue(queue, settings=settings) as q:
        counts = await q.counts()
        dead = await q.dead(1000)
        done = await q.client.xrange(q.keys.done)
        await q.obliterate(force=True)
    results: Counter[str] = Counter(
        str(orjson.loads(fields[b"r"])) if fields.get(b"r") else "-" for _, fields in done)
    ledger: dict[str, Counter[str]] = {}
    with sqlite3.connect(ledger_path) as db:
        for t in TABLES:
            ledger[t.name] = Counter(dict(db.execute(
                f"SELECT status, COUNT(*) FROM {prefix}{t.name} GROUP BY status").fetchall()))
        refund_status = Counter(dict(db.execute(
            f"SELECT COALESCE(refund_status, 'none'), COUNT(*) FROM {prefix}payments "
            "GROUP BY 1").fetchall()))
        applied = int(db.execute(f"SELECT COUNT(*) FROM {prefix}applied_events").fetchone()[0])
    db.close()
    return Report(counts, dead, results, ledger, refund_status, applied)


def _joined(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common()) or "-"


def _print_summary(result: Result, report: Report, codes: dict[str, int],
                   elapsed: float) -> bool:
    answers, tracker = result.answers, result.tracker
    print()
    print("HTTP requests")
    rows: list[Sequence[Any]] = [[status, answer, n] for (status, answer), n
                                 in sorted(answers.rows.items())]
    print(table(["status", "answer", "requests"], rows))
    refused = Counter({answer: n for (status, answer), n in answers.rows.items()
                       if status != 200})
    print()
    print("jobs per priority level")
    levels = list(dict.fromkeys(["high", "normal", "low", *answers.levels.values()]))
    by_level: dict[str, Counter[str]] = {level: Counter() for level in levels}
    late_id = result.late.event_id
    for job_id, level in answers.levels.items():
        by_level[level]["accepted"] += 2 if job_id == late_id else 1
    for (job_id, outcome), n in tracker.outcomes.items():
        by_level[answers.levels.get(job_id, "?")][outcome] += n
    for job_id, _ in tracker.retries:
        by_level[answers.levels.get(job_id, "?")]["retries"] += 1
    print(table(["level", "accepted", "completed", "retries", "dead"],
                [[level, c["accepted"], c["completed"], c["retries"], c["dead"]]
                 for level, c in by_level.items()]))
    print()
    print("ledger (SQLite, one row per entity; status = the furthest state whatever the order)")
    ledger_rows: list[Sequence[Any]] = [
        [name, sum(counter.values()), _joined(counter)]
        for name, counter in report.ledger.items()]
    ledger_rows.append(["payments.refund_status", "", _joined(report.refund_status)])
    ledger_rows.append(["applied_events", report.applied, ""])
    print(table(["table", "rows", "by status"], ledger_rows))
    print()
    print("dead letters")
    print(table(["event id", "event", "reason", "error"],
                [[d["job_id"], d["name"], d["reason"], d["error"][:100]]
                 for d in report.dead]) if report.dead else "(none)")
    print()
    retried = [f"{tracker.names.get(job, job)} {job}: {err}" for job, err in tracker.retries]
    finished = sum(tracker.finished.values())
    counts = report.counts
    left = counts["waiting"] + counts["pending"] + counts["delayed"]
    completed = sum(n for (_, outcome), n in tracker.outcomes.items() if outcome == "completed")
    dead = sum(n for (_, outcome), n in tracker.outcomes.items() if outcome == "dead")
    print("summary")
    print(f"  requests {answers.sent}: accepted {answers.accepted}, duplicates "
          f"{answers.duplicates} (refused by the dedup mark), refused {answers.refused} "
          f"({_joined(refused)})")
    print(f"  jobs finished {finished}/{answers.accepted}: completed {completed}, dead {dead}")
    print(f"  handler results: {_joined(report.results)}")
    print(f"  retries: {len(retried)}" + "".join(f"\n    {line}" for line in retried))
    print(f"  left: waiting {counts['waiting']}, pending {counts['pending']}, "
          f"delayed {counts['delayed']}")
    print(f"  workers stopped with SIGTERM: exit codes {sorted(codes.values())}")
    ok = result.finished and finished == answers.accepted and left == 0
    print(f"  {'OK' if ok else 'INCOMPLETE'}: every accepted webhook "
          f"{'was' if ok else 'was NOT'} processed; {elapsed:.1f}s in all "
          f"(burst {result.burst_s:.2f}s, drain {result.elapsed:.1f}s)")
    return ok
