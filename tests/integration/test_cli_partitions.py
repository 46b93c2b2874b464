"""The find-and-steer commands on a partitioned queue (CliRunner on the real app, real
Redis): ``jobs`` merges the partitions and its printed cursor walks them all, ``--partition``
lists one, ``job`` finds a job of any partition, ``promote``/``retry``/``remove``/``cancel`` act
on the partition holding the job; a bad ``--partition`` is one line and exit 2."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest

from streamflow import Discard, Job, JobSpec, Queue, StreamflowSettings, Worker
from streamflow.partitions import partition_for
from tests.support import fast_settings, running, wait_until

PARTS = 4


pytestmark = pytest.mark.usefixtures("cli_env")




def _seed(redis_url: str, queue: str) -> None:
    async def go() -> None:
        async with Queue(queue, settings=StreamflowSettings.from_url(redis_url),
                         partitions=PARTS) as q:
            await q.add_bulk([JobSpec("pay", {"n": i}, job_id=f"evt_{i}") for i in range(10)])
            await q.add("later", {"n": 99}, job_id="evt_later", delay=3600)

    anyio.run(go)


def test_jobs_walks_every_partition_with_the_printed_cursor(
        cli: Any, redis_url: str, queue_name: str) -> None:
    _seed(redis_url, queue_name)
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(10):
        result = cli("jobs", queue_name, "--limit", "3", "--json", *cursor)
        assert result.exit_code == 0, result.output
        page = orjson.loads(result.stdout)
        seen += [job["id"] for job in page["jobs"]]
        assert all(job["partition"] == partition_for(job["id"], PARTS) for job in page["jobs"])
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert sorted(seen) == sorted(f"evt_{i}" for i in range(10))
    table = cli("jobs", queue_name, "--limit", "3")
    assert "partition" in table.stdout and "next page: --cursor p1." in table.stdout
    one = cli("jobs", queue_name, "--partition", "2", "--limit", "100", "--json")
    assert sorted(job["id"] for job in orjson.loads(one.stdout)["jobs"]) == sorted(
        f"evt_{i}" for i in range(10) if partition_for(f"evt_{i}", PARTS) == 2)
    bad = cli("jobs", queue_name, "--partition", "9")
    assert bad.exit_code == 2 and "partition 9 does not exist" in bad.output
    assert "Traceback" not in bad.output


def test_job_status_and_actions_reach_the_holding_partition(
        cli: Any, redis_url: str, queue_name: str) -> None:
    _seed(redis_url, queue_name)
    status = cli("job", queue_name, "evt_later", "--json")
    assert status.exit_code == 0, status.output
    assert orjson.loads(status.stdout)["state"] == "delayed"
    promoted = cli("promote", queue_name, "evt_later")
    assert promoted.exit_code == 0 and "promoted evt_later" in promoted.stdout
    assert cli("remove", queue_name, "evt_3").exit_code == 0
    assert cli("cancel", queue_name, "evt_4", "--partition",
               str(partition_for("evt_4", PARTS))).stdout.strip() == "removed evt_4"
    waiting = orjson.loads(cli("jobs", queue_name, "--limit", "100", "--json").stdout)
    assert {"evt_later"} <= {job["id"] for job in waiting["jobs"]}
    assert not {"evt_3", "evt_4"} & {job["id"] for job in waiting["jobs"]}
    missing = cli("retry", queue_name, "evt_nowhere")
    assert missing.exit_code != 0 and "any of the 4 partitions" in missing.output
    assert "Traceback" not in missing.output


@pytest.mark.parametrize("command", ["remove", "promote", "retry", "cancel"])
def test_an_action_on_a_wrong_partition_says_so(cli: Any, redis_url: str, queue_name: str,
                                                command: str) -> None:
    _seed(redis_url, queue_name)
    wrong = (partition_for("evt_1", PARTS) + 1) % PARTS
    result = cli(command, queue_name, "evt_1", "--partition", str(wrong))
    assert result.exit_code != 0 and "evt_1" in result.output and "not found" in result.output
    assert "Traceback" not in result.output


def test_dead_retry_and_purge_by_job_id_reach_every_partition(
        cli: Any, redis_url: str, queue_name: str) -> None:
    async def go() -> None:
        settings = fast_settings(redis_url)
        async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
            await q.add_bulk([JobSpec("bad", i, job_id=f"bad_{i}", attempts=1)
                              for i in range(6)])
            async with running(Worker(queue_name, _refuse, settings=settings)):
                await wait_until(lambda: _dead(q, 6))

    anyio.run(go)
    assert len({partition_for(f"bad_{i}", PARTS) for i in range(6)}) > 1
    retried = cli("dead", "retry", queue_name, "bad_1", "bad_2", "bad_5")
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.strip() == "3 jobs put back"
    purged = cli("dead", "purge", queue_name, "bad_0", "--yes")
    assert purged.stdout.strip() == "1 dead-lettered jobs deleted"
    missing = cli("dead", "retry", queue_name, "bad_1")
    assert missing.exit_code != 0 and "no dead-lettered job 'bad_1'" in missing.output
    listed = orjson.loads(cli("dead", "list", queue_name, "--json").stdout)
    assert sorted(e["job_id"] for e in listed) == ["bad_3", "bad_4"]


def _refuse(job: Job) -> None:
    raise Discard("refused")


async def _dead(q: Queue, count: int) -> bool:
    return (await q.counts())["dead"] == count
