"""Partitioned queues on one Redis: routing, dedup, counts, the recorded partition count,
workers over all partitions or a subset, and per-key order."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import pytest

from streamflow import Job, JobSpec, Queue, Worker
from streamflow.errors import ConfigurationError, PartitionMismatch
from streamflow.partitions import partition_for
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_jobs_route_by_key_then_id_then_round_robin(redis_url: str,
                                                          queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=4) as q:
        await q.add_bulk([JobSpec("k", i, key="pay_Q1x9") for i in range(5)])
        await q.add("k", 5, key="pay_Q1x9")
        await q.add("byid", None, job_id="evt_1")
        await q.add_bulk([("rr", i) for i in range(8)])
        per_partition = [(await q.partition(i).counts())["waiting"] for i in range(4)]
        home, id_home = partition_for("pay_Q1x9", 4), partition_for("evt_1", 4)
        expected = [2] * 4
        expected[home] += 6
        expected[id_home] += 1
        assert per_partition == expected
        assert (await q.counts())["waiting"] == 15
        assert await q.client.exists(q.keys.part(home).level("normal"))
        assert not await q.client.exists(q.keys.level("normal")), "nothing in the plain layout"
        await q.obliterate(force=True)


async def test_dedup_by_job_id_holds_across_partitions(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=8) as q:
        first = await q.add_bulk([JobSpec("e", i, job_id=f"evt_{i}") for i in range(50)])
        again = await q.add_bulk([JobSpec("e", i, job_id=f"evt_{i}") for i in range(50)])
        assert first == [f"evt_{i}" for i in range(50)]
        assert again == [None] * 50
        assert await q.add("e", 0, job_id="evt_0") is None
        assert (await q.counts())["waiting"] == 50
        info = await q.get_job("evt_7")
        assert info is not None and info["state"] == "waiting"
        await q.add("e", 0, job_id="evt_keyed", key="pay_9")
        for key in ("pay_9", None):
            found = await q.get_job("evt_keyed", key=key)
            assert found is not None and found["id"] == "evt_keyed"
        await q.obliterate(force=True)


async def test_the_partition_count_cannot_change_while_jobs_wait(redis_url: str,
                                                                 queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=4) as q:
        await q.add("x", 1)
        for other in (1, 2, 8):
            with pytest.raises(PartitionMismatch, match="has 4 partition"):
                async with Queue(queue_name, settings=settings, partitions=other):
                    pass
        await q.drain()
    async with Queue(queue_name, settings=settings, partitions=2) as q2:  # empty: allowed
        assert await q2.client.hget(q2.keys.meta, "partitions") == b"2"
        await q2.obliterate(force=True)
    async with Queue(queue_name, settings=settings) as plain:
        await plain.add("y", 1)
        with pytest.raises(PartitionMismatch, match="has 1 partition"):
            async with Queue(queue_name, settings=settings, partitions=3):
                pass
        await plain.obliterate(force=True)


async def test_a_worker_consumes_every_partition_sharing_its_concurrency(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    seen: Counter[int] = Counter()
    running_now = 0
    most = 0

    async def handler(job: Job) -> None:
        nonlocal running_now, most
        running_now += 1
        most = max(most, running_now)
        await anyio.sleep(0.001)
        seen[job.data] += 1
        running_now -= 1

    async with Queue(queue_name, settings=settings, partitions=6) as q:
        await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(600)])
        worker = Worker(queue_name, handler, settings=settings, concurrency=10)
        async with running(worker):
            await wait_until(lambda: len(seen) == 600)
            await wait_until(lambda: _settled(q))
        assert set(seen.values()) == {1}
        assert most <= 10
        assert len(worker.parts) == 6 and worker.processed == 600
        await q.obliterate(force=True)


async def test_no_partition_starves_behind_another_partitions_backlog(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    order: list[str] = []

    async def handler(job: Job) -> None:
        order.append(job.name)

    async with Queue(queue_name, settings=settings, partitions=2) as q:
        busy = next(k for k in (f"k{i}" for i in range(100)) if partition_for(k, 2) == 0)
        quiet = next(k for k in (f"k{i}" for i in range(100)) if partition_for(k, 2) == 1)
        await q.add_bulk([JobSpec("busy", i, key=busy) for i in range(600)])
        await q.add_bulk([JobSpec("quiet", i, key=quiet) for i in range(10)])
        worker = Worker(queue_name, handler, settings=settings, concurrency=4)
        async with running(worker):
            await wait_until(lambda: len(order) == 610)
        last_quiet = max(i for i, name in enumerate(order) if name == "quiet")
        assert last_quiet < 60, "the quiet partition was served while the busy one had work"
        await q.obliterate(force=True)


async def test_a_worker_can_take_a_subset_of_partitions(redis_url: str,
                                                        queue_name: str) -> None:
    settings = fast_settings(redis_url)
    seen: list[int] = []
    async with Queue(queue_name, settings=settings, partitions=4) as q:
        await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(200)])
        mine = [i for i in range(200) if partition_for(f"k{i}", 4) in (1, 2)]
        worker = Worker(queue_name, lambda job: seen.append(job.data), settings=settings,
                        partitions=[1, 2])
        async with running(worker):
            await wait_until(lambda: len(seen) == len(mine))
            await anyio.sleep(0.3)  # nothing else comes: the other partitions are not read
        assert sorted(seen) == mine
        assert (await q.partition(0).counts())["waiting"] > 0
        await q.obliterate(force=True)


async def test_a_worker_refuses_partitions_the_queue_does_not_have(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=2) as q:
        await q.add("x", 1)
        with pytest.raises(ConfigurationError, match="partition 5 does not exist"):
            await Worker(queue_name, lambda job: None, settings=settings,
                         partitions=[0, 5]).run(handle_signals=False)
        await q.obliterate(force=True)


async def test_per_key_order_holds_through_retries(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    settings.worker.promote_interval = 0.01
    settings.queue.backoff_delay = 0.01
    keys = 40
    per_key = 25
    last: dict[int, int] = {}
    active: set[int] = set()
    violations: list[Any] = []
    failed_once: set[tuple[int, int]] = set()

    async def handler(job: Job) -> None:
        key, seq = job.data
        if key in active:
            violations.append(("two at once", key, seq))
        active.add(key)
        try:
            await anyio.sleep(random.random() * 0.003)
            if seq % 7 == 3 and (key, seq) not in failed_once:
                failed_once.add((key, seq))
                raise RuntimeError("transient")
            if last.get(key, -1) != seq - 1:
                violations.append(("out of order", key, last.get(key), seq))
            last[key] = seq
        finally:
            active.discard(key)

    async with Queue(queue_name, settings=settings, partitions=3, ordered=True) as q:
        specs = [JobSpec("pay", [k, s], key=f"pay_{k}") for s in range(per_key)
                 for k in range(keys)]
        random.shuffle(specs)  # order is per key: the add order of each key is what counts
        specs.sort(key=lambda spec: spec.data[1])
        await q.add_bulk(specs[: len(specs) // 2])
        for spec in specs[len(specs) // 2:][:50]:
            await q.add(spec.name, spec.data, key=spec.key)
        await q.add_bulk(specs[len(specs) // 2 + 50:])
        workers = [Worker(queue_name, handler, settings=settings, concurrency=16)
                   for _ in range(2)]
        async with running(*workers):
            await wait_until(lambda: sum(last.values()) + len(last) == keys * per_key,
                             timeout=30)
            await wait_until(lambda: _settled(q))
        assert violations == []
        assert all(last[k] == per_key - 1 for k in range(keys))
        for i in range(3):
            assert await q.client.hlen(q.keys.part(i).keylocks) == 0, "every key released"
        await q.obliterate(force=True)


async def test_a_dead_job_lets_the_next_job_of_its_key_go(redis_url: str,
                                                          queue_name: str) -> None:
    settings = fast_settings(redis_url)
    done: list[str] = []

    async def handler(job: Job) -> None:
        if job.name == "poison":
            raise RuntimeError("always")
        done.append(job.name)

    async with Queue(queue_name, settings=settings, ordered=True) as q:
        await q.add("poison", None, key="k", attempts=2)
        await q.add("after", None, key="k")
        await q.add("other", None, key="other-key")
        assert (await q.counts())["waiting"] == 2, "'after' is held behind 'poison'"
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: done.count("after") == 1)
        assert done.index("other") < done.index("after") or len(done) == 2
        assert (await q.counts())["dead"] == 1
        await q.obliterate(force=True)


async def _settled(q: Queue) -> bool:
    counts = await q.counts()
    return counts["waiting"] == 0 and counts["pending"] == 0 and counts["delayed"] == 0


def test_cli_stats_and_pending_sum_the_partitions(redis_url: str, queue_name: str) -> None:
    from typer.testing import CliRunner

    from streamflow.cli import app

    async def fill() -> None:
        async with Queue(queue_name, settings=fast_settings(redis_url), partitions=3) as q:
            await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(30)])

    anyio.run(fill)
    runner = CliRunner()
    result = runner.invoke(app, ["--redis-url", redis_url, "stats", queue_name, "--json"])
    assert result.exit_code == 0, result.output
    assert '"waiting":30' in result.output.replace(" ", "")
    result = runner.invoke(app, ["--redis-url", redis_url, "pending", queue_name, "--json"])
    assert result.exit_code == 0 and '"2:normal"' in result.output, result.output
    listed = runner.invoke(app, ["--redis-url", redis_url, "queues", "--json"])
    assert listed.exit_code == 0 and queue_name in listed.output, listed.output
    assert f"{queue_name}#" not in listed.output, "partitions are not listed as queues"
    bad = runner.invoke(app, ["--redis-url", redis_url, "worker", queue_name,
                              "--app", "tests.support:fast_settings", "--partitions", "2-x"])
    assert bad.exit_code == 2 and "bad partition set" in bad.stderr
    outside = runner.invoke(app, ["--redis-url", redis_url, "worker", queue_name,
                                  "--app", "tests.support:fast_settings", "--partitions", "1-4"])
    assert outside.exit_code == 2 and "partition 3 does not exist" in outside.stderr, (
        outside.output)

    async def clean() -> None:
        async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
            assert q.partitions == 3, "the recorded count is adopted"
            await q.obliterate(force=True)

    anyio.run(clean)


async def test_repeatable_jobs_of_a_partitioned_queue_fire(redis_url: str,
                                                           queue_name: str) -> None:
    settings = fast_settings(redis_url)
    ticks: list[str] = []
    async with Queue(queue_name, settings=settings, partitions=3) as q:
        key = await q.repeat("tick", None, every=0.05)
        assert [r["key"] for r in await q.repeats()] == [key]
        async with running(Worker(queue_name, lambda job: ticks.append(job.id),
                                  settings=settings)):
            await wait_until(lambda: len(ticks) >= 2)
        assert await q.remove_repeat(key)
        await q.obliterate(force=True)


async def test_a_job_dead_lettered_as_stalled_lets_the_next_job_of_its_key_go(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    settings.worker.stalled_interval = 0.2
    settings.worker.max_stalled_count = 0
    done: list[str] = []
    async with Queue(queue_name, settings=settings, ordered=True) as q:
        await q.add("first", None, key="k")
        await q.add("second", None, key="k")
        stream = q.keys.level("normal")
        # a consumer took "first" twice and vanished: the reclaimer dead-letters it (stalled)
        [[_, [(entry_id, _)]]] = await q.client.xreadgroup("workers", "ghost", {stream: ">"})
        await q.client.xclaim(stream, "workers", "ghost", 0, [entry_id])
        async with running(Worker(queue_name, lambda job: done.append(job.name),
                                  settings=settings)):
            await wait_until(lambda: done == ["second"])
        [dead] = await q.dead()
        assert dead["reason"] == "stalled"
        await q.obliterate(force=True)


async def test_a_worker_finds_the_partitions_a_producer_recorded(redis_url: str,
                                                                 queue_name: str) -> None:
    settings = fast_settings(redis_url)  # partitions not set: the worker reads the count
    seen: list[int] = []
    q = Queue(queue_name, settings=settings, partitions=5)  # no `async with`
    try:
        await q.add("j", -1, key="k")
        await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(50)])
        worker = Worker(queue_name, lambda job: seen.append(job.data), settings=settings)
        async with running(worker):
            await wait_until(lambda: len(seen) == 51)
        assert len(worker.parts) == 5
        with pytest.raises(ValueError, match="per partition"):
            await q.retry_dead(["1-0"])
        await q.obliterate(force=True)
    finally:
        await q.close()


async def test_a_bulk_add_over_many_chunks_keeps_the_order_of_a_key(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=2, ordered=True) as q:
        ids = await q.add_bulk([JobSpec("j", i, key="one-key") for i in range(2500)])
        keys = q.keys.part(partition_for("one-key", 2))
        assert await q.client.hget(keys.keylocks, "one-key") == ids[0].encode()  # type: ignore[union-attr]
        held = await q.client.lrange(keys.held("one-key"), 0, -1)
        assert [item.split(b"|", 1)[1].decode() for item in held] == ids[1:]
        await q.obliterate(force=True)
