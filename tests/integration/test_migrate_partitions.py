"""``streamflow partitions migrate``: jobs of a plain queue and of 4 partitions moved to 2,
all processed once afterwards, per-key order and dedup by id intact."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from streamflow import Job, JobSpec, Queue, Worker
from streamflow.errors import QueueBusy
from streamflow.queue.migrate import migrate_partitions
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


class KeyOrder:
    """What a handler saw of each key's sequence numbers: `violations` lists each number that
    did not follow the previous one of its key."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.violations: list[Any] = []

    def saw(self, key: str, seq: int) -> None:
        if self.last.get(key, -1) != seq - 1:
            self.violations.append((key, self.last.get(key), seq))
        self.last[key] = seq


async def _fill(q: Queue, ordered: bool) -> list[JobSpec]:
    """Waiting jobs with ids and keys, without either, delayed ones, and a dead letter."""
    specs = [JobSpec("keyed", [f"pay_{i % 7}", i // 7], key=f"pay_{i % 7}", job_id=f"evt_{i}")
             for i in range(70)]
    specs += [JobSpec("byid", ["-", i], job_id=f"id_{i}") for i in range(20)]
    specs += [JobSpec("anon", ["-", i]) for i in range(20)]
    specs += [JobSpec("later", ["-", i], job_id=f"late_{i}", delay=0.5) for i in range(10)]
    if ordered:  # a delayed job in the middle of a key's jobs: it holds the later ones
        specs.append(JobSpec("keyed", ["pay_0", 10], key="pay_0", job_id="evt_d", delay=0.3))
        specs += [JobSpec("keyed", ["pay_0", 11 + i], key="pay_0", job_id=f"evt_x{i}")
                  for i in range(3)]
    await q.add_bulk(specs[:50])
    for spec in specs[50:60]:
        await q.add(spec.name, spec.data, key=spec.key, job_id=spec.job_id)
    await q.add_bulk(specs[60:])
    return specs


@pytest.mark.parametrize(("before", "ordered"), [(1, False), (1, True), (4, True), (4, False)])
async def test_jobs_move_to_the_new_count_and_all_run_once(redis_url: str, queue_name: str,
                                                          before: int, ordered: bool) -> None:
    settings = fast_settings(redis_url)
    ran: list[Any] = []
    order = KeyOrder()

    async def handler(job: Job) -> None:
        key, seq = job.data
        if job.name == "keyed" and ordered:
            order.saw(key, seq)
        ran.append((job.name, key, seq))

    async with Queue(queue_name, settings=settings, partitions=before, ordered=ordered) as q:
        specs = await _fill(q, ordered)
        counts = await q.counts()
        total = counts["waiting"] + counts["delayed"] + counts["held"]
        assert total == len(specs)
        report = await migrate_partitions(q, 2)
        assert (report.before, report.after) == (before, 2)
        assert report.status >= 70 + 20 + 10  # the status records are the dedup marks

    async with Queue(queue_name, settings=settings, ordered=ordered) as q:
        assert q.partitions == 2, "the new count is recorded"
        counts = await q.counts()
        assert counts["waiting"] + counts["delayed"] + counts["held"] == len(specs)
        for old in range(2, before):
            assert not await q.client.exists(q.keys.part(old).level("normal"))
        if before == 1:
            assert not await q.client.exists(q.keys.level("normal"), q.keys.delayed)
        again = await q.add_bulk([JobSpec(s.name, s.data, key=s.key, job_id=s.job_id)
                                  for s in specs if s.job_id is not None])
        assert again == [None] * len(again), "dedup by id holds after the migration"
        workers = [Worker(queue_name, handler, settings=settings, concurrency=8)
                   for _ in range(2)]
        async with running(*workers):
            await wait_until(lambda: len(ran) >= len(specs), timeout=30)
            await anyio.sleep(0.3)  # nothing runs twice
        assert len(ran) == len(specs)
        assert Counter(ran) == Counter((s.name, *s.data) for s in specs)
        assert order.violations == []
        counts = await q.counts()
        assert counts["waiting"] + counts["delayed"] + counts["held"] + counts["pending"] == 0
        await q.obliterate(force=True)


async def test_dead_letters_and_status_follow_and_order_state_moves(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)

    async def fail(job: Job) -> None:
        raise RuntimeError("no")

    async with Queue(queue_name, settings=settings, partitions=4, ordered=True) as q:
        await q.add("bad", None, job_id="bad_1", attempts=1, track=True)
        async with running(Worker(queue_name, fail, settings=settings)):
            await wait_until(lambda: _dead(q))
        await q.add_bulk([JobSpec("k", i, key="pay_Z", job_id=f"z{i}") for i in range(4)])
        report = await migrate_partitions(q, 3)
        assert report.dead == (1 if q.route(None, "bad_1") >= 3 else 0)
    async with Queue(queue_name, settings=settings) as q:
        assert q.partitions == 3
        [dead] = await q.dead()
        assert dead["job_id"] == "bad_1"
        info = await q.get_job("bad_1")
        assert info is not None and info["state"] == "dead"
        counts = await q.counts()
        assert (counts["waiting"], counts["held"]) == (1, 3)
        home = q.keys.part(q.route("pay_Z"))
        assert await q.client.hget(home.keylocks, "pay_Z") == b"z0"
        assert await q.client.llen(home.held("pay_Z")) == 3
        await q.obliterate(force=True)


async def _dead(q: Queue) -> bool:
    return (await q.counts())["dead"] == 1


async def test_migration_is_refused_while_workers_run(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=2) as q:
        await q.add("j", None)
        async with running(Worker(queue_name, lambda job: None, settings=settings)):
            await wait_until(lambda: _registered(q))
            with pytest.raises(QueueBusy, match="active workers"):
                await migrate_partitions(q, 3)
        await q.obliterate(force=True)


async def test_migration_is_refused_while_jobs_are_in_flight(redis_url: str,
                                                             queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings) as q:
        await q.add("j", None)
        await q.client.xreadgroup("workers", "gone", {q.keys.level("normal"): ">"})
        with pytest.raises(QueueBusy, match="1 job\\(s\\) in flight"):
            await migrate_partitions(q, 2)
        assert q.partitions == 1 and (await q.counts())["pending"] == 1
        await q.obliterate(force=True)


async def _registered(q: Queue) -> bool:
    return any([await q.client.hlen(q.keys.part(i).workers) for i in range(2)])


def test_cli_migrate(redis_url: str, queue_name: str) -> None:
    from typer.testing import CliRunner

    from streamflow.cli import app

    async def fill() -> None:
        async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
            await q.add_bulk([JobSpec("j", i, key=f"k{i}") for i in range(30)])

    anyio.run(fill)
    runner = CliRunner()
    base = ["--redis-url", redis_url, "partitions"]
    result = runner.invoke(app, [*base, "migrate", queue_name, "--to", "3", "--yes"])
    assert result.exit_code == 0, result.output
    assert "now has 3 partition(s)" in result.output
    shown = runner.invoke(app, [*base, "show", queue_name])
    assert shown.exit_code == 0 and "3 partition(s)" in shown.output
    stats = runner.invoke(app, ["--redis-url", redis_url, "stats", queue_name, "--json"])
    assert '"waiting":30' in stats.output.replace(" ", ""), stats.output
    as_json = runner.invoke(app, [*base, "migrate", queue_name, "--to", "2", "--yes", "--json"])
    assert as_json.exit_code == 0 and '"after": 2' in as_json.output, as_json.output
    bad = runner.invoke(app, [*base, "migrate", queue_name, "--to", "0", "--yes"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    unknown = runner.invoke(app, [*base, "migrate", "no-such-queue", "--to", "2", "--yes"])
    assert unknown.exit_code == 2 and "unknown queue" in unknown.stderr

    async def clean() -> None:
        async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
            await q.obliterate(force=True)

    anyio.run(clean)


@pytest.mark.parametrize(("before", "to"), [(4, 2), (2, 5), (1, 3)])
async def test_an_interrupted_migration_run_again_loses_nothing_and_keeps_order(
        redis_url: str, queue_name: str, before: int, to: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamflow.queue import migrate

    settings = fast_settings(redis_url)
    ran: list[Any] = []
    order = KeyOrder()
    active: set[str] = set()

    async def handler(job: Job) -> None:
        key, seq = job.data
        if key in active:
            order.violations.append(("two at once", key, seq))
        active.add(key)
        await anyio.sleep(0.005)
        active.discard(key)
        order.saw(key, seq)
        ran.append((key, seq))

    specs = [JobSpec("k", [f"pay_{i % 9}", i // 9], key=f"pay_{i % 9}", job_id=f"e{i}")
             for i in range(90)]
    async with Queue(queue_name, settings=settings, partitions=before, ordered=True) as q:
        await q.add_bulk(specs)
        original = migrate._Mover.move_the_rest

        async def crash(self: Any) -> None:
            raise ConnectionError("the operator's laptop went to sleep")

        monkeypatch.setattr(migrate._Mover, "move_the_rest", crash)
        with pytest.raises(ConnectionError):
            await migrate_partitions(q, to)
        monkeypatch.setattr(migrate._Mover, "move_the_rest", original)
        await migrate_partitions(q, to)
    async with Queue(queue_name, settings=settings, ordered=True) as q:
        assert q.partitions == to
        async with running(Worker(queue_name, handler, settings=settings, concurrency=16)):
            await wait_until(lambda: len(ran) >= len(specs), timeout=30)
            await anyio.sleep(0.2)
        assert order.violations == []
        assert Counter(ran) == Counter(tuple(s.data) for s in specs)
        await q.obliterate(force=True)


async def test_a_lock_whose_job_is_gone_lets_the_next_job_go(redis_url: str,
                                                             queue_name: str) -> None:
    settings = fast_settings(redis_url)
    ran: list[int] = []
    async with Queue(queue_name, settings=settings, ordered=True) as q:
        await q.add_bulk([JobSpec("k", i, key="pay_L", job_id=f"L{i}") for i in range(3)])
        [(entry_id, _)] = await q.client.xrange(q.keys.level("normal"))
        await q.client.xdel(q.keys.level("normal"), entry_id)  # L0 ended, its release lost
        await migrate_partitions(q, 2)
    async with Queue(queue_name, settings=settings, ordered=True) as q:
        async with running(Worker(queue_name, lambda job: ran.append(job.data),
                                  settings=settings)):
            await wait_until(lambda: len(ran) == 2)
        assert ran == [1, 2]
        await q.obliterate(force=True)


async def test_dedup_marks_of_an_older_queue_are_copied_with_their_ttl(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings) as q:
        for i in range(3):  # the marks of a queue written before status records were them
            await q.client.set(q.keys.dedup(f"old_{i}"), f"1-{i}", px=600_000)
        await q.client.set(q.keys.dedup("old_forever"), "2-0")
        report = await migrate_partitions(q, 3)
        assert report.dedup_marks == 4
        for part in range(3):
            keys = q.keys.part(part)
            assert await q.client.get(keys.dedup("old_1")) == b"1-1"
            assert 0 < await q.client.pttl(keys.dedup("old_1")) <= 600_000
            assert await q.client.pttl(keys.dedup("old_forever")) == -1
        assert not await q.client.exists(q.keys.dedup("old_0"), q.keys.dedup("old_forever"))
    async with Queue(queue_name, settings=settings) as q:
        await q.obliterate(force=True)
