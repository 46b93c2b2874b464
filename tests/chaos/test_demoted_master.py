"""A worker whose master is demoted under it (REPLICAOF) keeps running and resumes.

A demoted master unblocks a blocked XREADGROUP with ``-UNBLOCKED ... instance state changed``
and answers writes with ``-READONLY``. Neither may stop a worker: they are retried as connection
errors until the node is a master again (with Sentinel, until the client reaches the new one).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from streamflow import Job, JobSpec, Queue, Worker
from tests.servers import RedisProcess
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_worker_survives_its_master_being_demoted_and_promoted_again(
        tmp_path: Path, queue_name: str) -> None:
    noeviction = ["maxmemory-policy noeviction", "repl-diskless-sync-delay 0"]
    with RedisProcess(tmp_path / "a", config=noeviction) as a, RedisProcess(
            tmp_path / "b", config=[*noeviction, f"replicaof {a.host} {a.port}"]) as b:
        with a.client() as ca, b.client() as cb:
            settings = fast_settings(a.url)
            settings.redis.retry_attempts = 3
            done: list[str] = []

            async def handler(job: Job) -> None:
                done.append(job.id)

            worker = Worker(queue_name, handler, settings=settings, consumer="survivor")
            async with Queue(queue_name, url=a.url) as qa, running(worker):
                await qa.add_bulk([JobSpec("n", job_id=f"before-{i}") for i in range(10)])
                await wait_until(lambda: len(done) == 10)
                await wait_until(lambda: _in_sync(cb), timeout=10)
                await anyio.sleep(0.3)  # the worker sits in XREADGROUP BLOCK now

                # Switch over to b: a becomes b's replica (UNBLOCKED, then READONLY).
                cb.execute_command("REPLICAOF", "NO", "ONE")
                ca.execute_command("REPLICAOF", b.host, str(b.port))
                async with Queue(queue_name, url=b.url) as qb:
                    await qb.add_bulk([JobSpec("n", job_id=f"during-{i}") for i in range(10)])
                await wait_until(lambda: _in_sync(ca), timeout=10)
                await anyio.sleep(1.5)  # the worker meets the demoted node for a while
                assert not worker.stopped

                # And back: a is the master again.
                ca.execute_command("REPLICAOF", "NO", "ONE")
                cb.execute_command("REPLICAOF", a.host, str(a.port))
                await qa.add_bulk([JobSpec("n", job_id=f"after-{i}") for i in range(10)])
                await wait_until(lambda: len(set(done)) == 30, timeout=30)
                assert not worker.stopped
                await wait_until(lambda: _none_pending(qa))
            assert sorted(set(done)) == sorted(
                f"{when}-{i}" for when in ("before", "during", "after") for i in range(10))


def _in_sync(replica: object) -> bool:
    info = replica.info("replication")  # type: ignore[attr-defined]
    return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")


async def _none_pending(q: Queue) -> bool:
    return (await q.counts())["pending"] == 0
