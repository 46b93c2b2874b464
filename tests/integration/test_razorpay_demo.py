"""``streamflow-razorpay demo`` end to end (a subprocess on the test Redis, checked by its
summary), and the deploy manifests' worker target ``consumers.razorpay.handlers:router``."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import redis

from consumers.razorpay.demo import CHECKOUTS
from consumers.razorpay.sample import payment_event
from streamflow import Queue


def test_demo_runs_the_pipeline_and_ends_by_itself(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAZORPAY_", "STREAMFLOW_")) and k not in ("REDIS_URL",
                                                                             "DATABASE_URL")}
    env["STREAMFLOW_REDIS_URL"] = redis_url
    done = subprocess.run([sys.executable, "-m", "consumers.razorpay.cli", "demo"], env=env,
                          capture_output=True, text=True, timeout=90)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "(answers: used as is)" in out  # the test's Redis, not a second one

    requests = re.search(r"requests (\d+): accepted (\d+), duplicates (\d+) .*refused (\d+) "
                         r"\((.*)\)", out)
    assert requests, out
    sent, accepted, duplicates, refused = map(int, requests.groups()[:4])
    assert refused == 2 and "invalid signature 1" in requests[5]
    assert "body is not JSON 1" in requests[5]
    assert duplicates == 5  # each re-delivery answered 200 duplicate, enqueued once
    assert sent == accepted + duplicates + refused
    assert re.search(r"^200\s+duplicate\s+5$", out, re.M)
    assert re.search(r"^400\s+invalid signature\s+1$", out, re.M)
    assert re.search(r"^400\s+body is not JSON\s+1$", out, re.M)

    finished = re.search(r"jobs finished (\d+)/(\d+): completed (\d+), dead (\d+)", out)
    assert finished, out
    assert int(finished[1]) == int(finished[2]) == accepted
    assert int(finished[4]) == 1  # the poison event
    assert "left: waiting 0, pending 0, delayed 0" in out
    assert re.search(r"\bdiscarded\s+malformed payment\.captured", out)
    # the lock drill: retried once (at least: a busy ledger may cause more), then applied
    retries = re.search(r"retries: (\d+)", out)
    assert retries and int(retries[1]) >= 1 and "Retry: ledger unavailable" in out
    # the late re-delivery was enqueued again and changed nothing in the ledger
    assert re.search(r"handler results: .*duplicate 1", out)
    applied = re.search(r"^applied_events\s+(\d+)", out, re.M)
    assert applied and int(applied[1]) == accepted - 2  # minus the poison and the late copy
    # out-of-order deliveries still end in the furthest state
    assert re.search(rf"^payments\s+{CHECKOUTS + 1}\s+captured {CHECKOUTS}, failed 1$", out,
                     re.M)
    assert re.search(rf"^orders\s+{CHECKOUTS}\s+paid {CHECKOUTS}$", out, re.M)
    assert re.search(r"^refunds\s+3\s+processed 2, failed 1$", out, re.M)
    assert "OK: every accepted webhook was processed" in out

    queue = re.search(r"^queue\s+(\S+)", out, re.M)
    assert queue
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=f"*{queue[1]}*")), "the queue's keys remain"
    finally:
        client.close()


@pytest.mark.anyio
async def test_generic_worker_runs_the_module_router(redis_url: str, queue_name: str,
                                                     tmp_path: Path) -> None:
    """What deploy/ runs: ``streamflow worker <queue> --app consumers.razorpay.handlers:router``
    opens the environment's ledger on the first job and stops cleanly on SIGTERM."""
    ledger = tmp_path / "ledger.sqlite3"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAZORPAY_", "STREAMFLOW_")) and k != "DATABASE_URL"}
    env.update(STREAMFLOW_REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{ledger}",
               STREAMFLOW_WORKER__BLOCK_MS="200")
    async with Queue(queue_name, url=redis_url) as q:
        await q.add("payment.captured", payment_event("payment.captured", "pay_deploy1"),
                    priority="high", job_id="evt_deploy1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamflow", "worker", queue_name, "--app",
             "consumers.razorpay.handlers:router", "--log-level", "WARNING"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                counts = await q.counts()
                if counts["waiting"] == counts["pending"] == 0 and ledger.exists():
                    break
                assert proc.poll() is None and time.monotonic() < deadline
                await anyio.sleep(0.05)
        finally:
            proc.terminate()
            output = proc.communicate(timeout=15)[0].decode()
        assert proc.returncode == 0, output
        assert not await q.dead()
        await q.obliterate(force=True)
    with sqlite3.connect(ledger) as db:
        row = db.execute("SELECT status FROM rzp_payments WHERE id = 'pay_deploy1'").fetchone()
    assert row == ("captured",)
