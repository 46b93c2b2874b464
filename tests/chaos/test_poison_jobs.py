"""A poison job costs one job, not the workers: SystemExit and KeyboardInterrupt raised by a
handler fail its job; under process isolation a handler that kills its process (os._exit, a
segfault) fails its job as ``crashed`` and the child is replaced; a job that kills its
(unisolated) workers again and again is dead-lettered as ``killed_worker``; a worker whose
sync handler outlives its deadline still exits on SIGTERM within the grace."""

from __future__ import annotations

import signal
import subprocess
from functools import partial

import pytest

from streamflow import JobSpec, Queue
from tests.support import wait_until
from tests.workers import start_worker

pytestmark = pytest.mark.anyio

APP = "tests.poison_apps:router"
FAST = {"STREAMFLOW_WORKER__HEARTBEAT_INTERVAL": "0.3", "STREAMFLOW_QUEUE__BACKOFF_DELAY": "0.05",
        "STREAMFLOW_WORKER__PROMOTE_INTERVAL": "0.05"}


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


async def dead_letters(q: Queue, n: int) -> bool:
    return int((await q.counts())["dead"]) >= n


async def runs(q: Queue) -> list[tuple[str, int]]:
    """(job id, pid) of every handler run, in order."""
    found = []
    for raw in await q.client.lrange(f"{q.name}:runs", 0, -1):
        job_id, _, pid = raw.decode().rpartition(":")
        found.append((job_id, int(pid)))
    return found


async def test_sys_exit_and_keyboard_interrupt_in_a_handler_fail_the_job_not_the_worker(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        poison = ["sys_exit", "sys_exit_async", "interrupt", "interrupt_sync"]
        await q.add_bulk([JobSpec(name, {}, job_id=name, attempts=2) for name in poison])
        await q.add_bulk([JobSpec("ok", {}, job_id=f"ok-{i}") for i in range(3)])
        proc = start_worker(redis_url, queue_name, consumer="survivor", app=APP, **FAST)
        try:
            await wait_until(lambda: dead_letters(q, 4), timeout=30)
            await wait_until(lambda: _completed(q, 3))
            assert proc.poll() is None  # the worker lives on
        finally:
            stop(proc)
        letters = {d["job_id"]: (d["reason"], d["error"]) for d in await q.dead()}
        assert letters == {
            "sys_exit": ("failed", "SystemExit: 3"),
            "sys_exit_async": ("failed", "SystemExit: bye"),
            "interrupt": ("failed", "KeyboardInterrupt"),
            "interrupt_sync": ("failed", "KeyboardInterrupt"),
        }
        ran = [job_id for job_id, _ in await runs(q)]
        assert all(ran.count(name) == 2 for name in poison)  # retried, then dead


async def test_a_handler_that_kills_its_process_under_isolation_fails_only_its_job(
        redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        await q.add("hard_exit", {}, job_id="hard_exit", attempts=2)
        await q.add("segfault", {}, job_id="segfault", attempts=1)
        await q.add_bulk([JobSpec("ok", {}, job_id=f"ok-{i}") for i in range(10)])
        proc = start_worker(redis_url, queue_name, consumer="isolated", concurrency=2, app=APP,
                            options=("--isolation", "process"),
                            STREAMFLOW_WORKER__ISOLATION_PROCESSES="2", **FAST)
        try:
            await wait_until(lambda: dead_letters(q, 2), timeout=60)
            await wait_until(lambda: _completed(q, 10), timeout=30)
            assert proc.poll() is None
        finally:
            stop(proc)
        letters = {d["job_id"]: (d["reason"], d["error"]) for d in await q.dead()}
        assert letters == {
            "hard_exit": ("crashed", "the handler's process exited with code 7 mid-job"),
            "segfault": ("crashed", "the handler's process was killed by SIGSEGV mid-job"),
        }
        ran = await runs(q)
        pids = {pid for _, pid in ran}
        assert proc.pid not in pids  # every handler ran in a child
        crashes = [i for i, (job_id, _) in enumerate(ran) if job_id in ("hard_exit", "segfault")]
        assert len(crashes) == 3  # hard_exit twice (retried), segfault once
        for i in crashes:  # a child that died ran nothing after: another took its place
            assert ran[i][1] not in [pid for _, pid in ran[i + 1:]]
        assert len(pids) > 2


async def test_a_job_that_kills_its_workers_is_dead_lettered_as_killed_worker(
        redis_url: str, queue_name: str) -> None:
    env = {**FAST, "STREAMFLOW_WORKER__STALLED_INTERVAL": "1.5",
           "STREAMFLOW_WORKER__MAX_STALLED_COUNT": "1"}
    async with Queue(queue_name, url=redis_url) as q:
        await q.add("hard_exit", {}, job_id="killer")
        for n in (1, 2):  # the job kills one worker, then the one that reclaims it
            proc = start_worker(redis_url, queue_name, consumer=f"victim-{n}", app=APP, **env)
            try:
                await wait_until(partial(_ended, proc), timeout=30)
            finally:
                stop(proc)
            assert proc.returncode == 7
        survivor = start_worker(redis_url, queue_name, consumer="survivor", app=APP, **env)
        try:
            await wait_until(lambda: dead_letters(q, 1), timeout=30)
            assert survivor.poll() is None
        finally:
            stop(survivor)
        [letter] = await q.dead()
        assert (letter["job_id"], letter["reason"]) == ("killer", "killed_worker")
        assert letter["error"].startswith(
            "delivered 2 times without finishing; its worker victim-2 died mid-job")
        assert [job_id for job_id, _ in await runs(q)] == ["killer", "killer"]


async def test_sigterm_stops_a_worker_whose_sync_handlers_outlive_their_deadline(
        redis_url: str, queue_name: str) -> None:
    grace = 1.0
    async with Queue(queue_name, url=redis_url) as q:
        await q.add("sleep_sync", {"seconds": 120}, job_id="past-deadline", timeout=0.3)
        await q.add("sleep_sync", {"seconds": 120}, job_id="no-deadline")
        proc = start_worker(redis_url, queue_name, consumer="stuck", concurrency=2, app=APP,
                            STREAMFLOW_WORKER__SHUTDOWN_GRACE=str(grace), **FAST)
        try:
            await wait_until(lambda: _ran(q, 2), timeout=30)
            await wait_until(lambda: _retrying(q, "past-deadline"))  # its thread abandoned
            proc.send_signal(signal.SIGTERM)
            # the grace, plus a generous margin for a loaded test machine (it used never to end)
            await wait_until(lambda: proc.poll() is not None, timeout=grace + 5)
        finally:
            stop(proc)
        assert proc.returncode == 0


def _ended(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


async def _completed(q: Queue, n: int) -> bool:
    done = await q.client.xrange(q.keys.done)
    return len(done) >= n


async def _ran(q: Queue, n: int) -> bool:
    return len(await runs(q)) >= n


async def _retrying(q: Queue, job_id: str) -> bool:
    return any(e.get(b"e") == b"retrying" and e.get(b"i") == job_id.encode()
               for _, e in await q.client.xrange(q.keys.events))


@pytest.mark.parametrize("partitions", [1, 2])
async def test_a_worker_stopped_by_abandoned_threads_exits_1_to_be_restarted(
        redis_url: str, queue_name: str, partitions: int) -> None:
    async with Queue(queue_name, url=redis_url, partitions=partitions) as q:
        await q.ensure_group()  # the layout exists before the worker: it starts idle
        proc = start_worker(redis_url, queue_name, consumer="capped", concurrency=2, app=APP,
                            STREAMFLOW_WORKER__MAX_ABANDONED_THREADS="1", **FAST)
        try:  # before: exit code 0 (and, partitioned, the other partitions went on serving)
            every = q.partition_keys if partitions > 1 else [q.keys]
            await wait_until(lambda: _all_registered(q, [keys.workers for keys in every]),
                             timeout=30)
            await q.add("sleep_sync", {"seconds": 120}, job_id="stuck", timeout=0.3,
                        attempts=1)
            await wait_until(lambda: proc.poll() is not None, timeout=30)
        finally:
            stop(proc)
        assert proc.returncode == 1


async def _all_registered(q: Queue, workers_hashes: list[str]) -> bool:
    """Whether the worker's heartbeat is in every partition's workers hash (it is running)."""
    return all([await q.client.hexists(key, "capped") for key in workers_hashes])
