"""Jobs survive a Redis restart with AOF (``appendfsync always``): waiting, delayed and pending.

Pending entries belong to a consumer that fetched them and then stopped; after the restart a
worker reclaims them (``stalled_interval`` is short) and runs them with the others.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow import Job, JobSpec, Queue, Worker
from tests.servers import RedisProcess
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio

N = 20


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
async def test_waiting_delayed_and_pending_jobs_survive_a_restart(
        tmp_path: Path, queue_name: str, hard: bool) -> None:
    config = ["appendfsync always", "maxmemory-policy noeviction"]
    with RedisProcess(tmp_path / "aof", appendonly=True, config=config) as server:
        async with Queue(queue_name, url=server.url) as q:
            # Pending: fetched by a consumer that never acks (it "stops" right after).
            await q.add_bulk([JobSpec("job", {"kind": "pending"}, job_id=f"pending-{i}")
                              for i in range(N)])
            stream = q.keys.level("normal")
            fetched = await q.client.xreadgroup(
                q.settings.worker.group, "gone", {stream: ">"}, count=N)
            assert len(fetched[0][1]) == N
            await q.add_bulk([JobSpec("job", {"kind": "waiting"}, job_id=f"waiting-{i}")
                              for i in range(N)])
            await q.add_bulk([JobSpec("job", {"kind": "delayed"}, job_id=f"delayed-{i}",
                                      delay=0.5) for i in range(N)])
            before = await q.counts()
            assert (before["pending"], before["waiting"], before["delayed"]) == (N, N, N)
            await q.close()

            server.restart(hard=hard)

            after = await q.counts()
            assert (after["pending"], after["waiting"], after["delayed"]) == (N, N, N)
            # The dedup marks came back too: the same ids are refused.
            assert await q.add_bulk([JobSpec("job", job_id=f"waiting-{i}")
                                     for i in range(N)]) == [None] * N

            settings = fast_settings(server.url)
            settings.worker.stalled_interval = 0.5
            done: list[str] = []

            async def handler(job: Job) -> None:
                assert job.id.startswith(job.data["kind"])
                done.append(job.id)

            async with running(Worker(queue_name, handler, settings=settings)):
                await wait_until(lambda: len(set(done)) == 3 * N, timeout=20)
                await wait_until(lambda: _drained(q), timeout=10)
            expected = {f"{kind}-{i}" for kind in ("pending", "waiting", "delayed")
                        for i in range(N)}
            assert set(done) == expected
            assert len(done) == 3 * N  # each exactly once
            assert (await q.counts())["dead"] == 0


async def _drained(q: Queue) -> bool:
    counts = await q.counts()
    return counts["pending"] == 0 and counts["waiting"] == 0 and counts["delayed"] == 0
