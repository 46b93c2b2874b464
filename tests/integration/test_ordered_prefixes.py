"""Per-key order for some key prefixes only, and the count of held jobs."""

from __future__ import annotations

import pytest

from streamflow import Job, JobSpec, Queue, Worker
from streamflow.partitions import partition_for
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_only_keys_with_an_ordered_prefix_are_held(redis_url: str,
                                                         queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=2,
                     ordered=("pay_", "order_")) as q:
        await q.add_bulk([JobSpec("j", i, key="pay_1") for i in range(3)])
        await q.add_bulk([JobSpec("j", i, key="order_7") for i in range(2)])
        await q.add_bulk([JobSpec("j", i, key="cust_5") for i in range(4)])
        await q.add("j", None, key="pay_1")
        counts = await q.counts()
        assert counts["held"] == 2 + 1 + 1, "pay_1: 3 held, order_7: 1; cust_5 runs freely"
        assert counts["waiting"] == 1 + 1 + 4
        part = q.keys.part(partition_for("cust_5", 2))
        assert await q.client.hget(part.keylocks, "cust_5") is None
        assert not await q.client.exists(part.held("cust_5"))
        per_partition = [0, 0]
        per_partition[partition_for("pay_1", 2)] += 3
        per_partition[partition_for("order_7", 2)] += 1
        assert [(await q.partition(i).counts())["held"] for i in range(2)] == per_partition
        await q.obliterate(force=True)


async def test_held_jobs_are_counted_until_they_run(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    seen: list[tuple[str, int]] = []

    async def handler(job: Job) -> None:
        seen.append((job.name, job.data))

    async with Queue(queue_name, settings=settings, ordered=True) as q:
        await q.add_bulk([JobSpec("k", i, key="pay_A") for i in range(5)])
        await q.add("later", 0, key="pay_A", delay=0.2)  # held: its delay runs once let go
        counts = await q.counts()
        assert (counts["waiting"], counts["held"], counts["delayed"]) == (1, 5, 0)
        async with running(Worker(queue_name, handler, settings=settings, concurrency=8)):
            await wait_until(lambda: len(seen) == 6)
        assert [data for _, data in seen] == [0, 1, 2, 3, 4, 0]
        counts = await q.counts()
        assert (counts["waiting"], counts["held"], counts["delayed"]) == (0, 0, 0)
        await q.obliterate(force=True)


async def test_a_partitioned_ordered_queue_sums_held_over_partitions(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)
    async with Queue(queue_name, settings=settings, partitions=4, ordered=True) as q:
        await q.add_bulk([JobSpec("k", i, key=f"pay_{i % 10}") for i in range(50)])
        counts = await q.counts()
        assert (counts["waiting"], counts["held"]) == (10, 40)
        assert sum([(await q.partition(i).counts())["held"] for i in range(4)]) == 40
        await q.obliterate(force=True)


@pytest.mark.parametrize("bad", ["pay_", ("pay_", ""), (), ("pay_", 3), 5])
def test_bad_ordered_prefixes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="ordered"):
        Queue("q", ordered=bad)  # type: ignore[arg-type]


def test_the_prefix_setting_orders_those_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamflow import StreamflowSettings

    monkeypatch.setenv("STREAMFLOW_QUEUE__ORDERED_PREFIXES", "pay_, order_")
    settings = StreamflowSettings()
    assert settings.queue.ordered_prefixes == ["pay_", "order_"]
    q = Queue("q", settings=settings)
    assert q.ordered and q.key_order.prefixes == ("pay_", "order_")
    assert q.key_order.applies("pay_1") and not q.key_order.applies("cust_1")
    assert not q.key_order.applies(None)
    assert Queue("q", settings=settings, ordered=True).key_order.applies("cust_1")
    assert not Queue("q", settings=settings, ordered=False).ordered


def test_cli_stats_shows_held_jobs(redis_url: str, queue_name: str) -> None:
    import anyio
    from typer.testing import CliRunner

    from streamflow.cli import app

    async def fill() -> None:
        async with Queue(queue_name, settings=fast_settings(redis_url), partitions=2,
                         ordered=True) as q:
            await q.add_bulk([JobSpec("j", i, key="pay_S") for i in range(4)])

    async def clean() -> None:
        async with Queue(queue_name, settings=fast_settings(redis_url)) as q:
            await q.obliterate(force=True)

    anyio.run(fill)
    runner = CliRunner()
    table = runner.invoke(app, ["--redis-url", redis_url, "stats", queue_name])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    header, row = lines[-3].split(), lines[-1].split()  # header, rule, row
    assert row[header.index("held")] == "3", table.output
    as_json = runner.invoke(app, ["--redis-url", redis_url, "stats", queue_name, "--json"])
    assert '"held":3' in as_json.output.replace(" ", "")
    anyio.run(clean)
