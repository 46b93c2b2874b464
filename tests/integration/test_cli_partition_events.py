"""``streamflow events`` and ``streamflow metrics`` on a partitioned queue: every partition's
events merged by time, ``--partition N``, resuming from the cursor ``--json`` prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from typer.testing import Result

from streamflow import JobSpec, Queue, StreamflowSettings
from streamflow.events import id_key
from streamflow.partitions import partition_for

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4


pytestmark = pytest.mark.usefixtures("cli_env")




def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def records(result: Result) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in ok(result).stdout.splitlines()]


def add_keyed(redis_url: str, queue: str, count: int, start: int = 0) -> None:
    async def go() -> None:
        settings = StreamflowSettings.from_url(redis_url)
        settings.queue.events = "all"  # an added event per job
        async with Queue(queue, settings=settings, partitions=PARTITIONS) as q:
            await q.add_bulk([JobSpec("pay", i, job_id=f"evt_{i}", key=f"pay_{i}")
                              for i in range(start, start + count)])

    anyio.run(go)


def home(i: int) -> int:
    return partition_for(f"pay_{i}", PARTITIONS)


def test_events_of_every_partition_newest_first(cli: Any, redis_url: str,
                                                queue_name: str) -> None:
    add_keyed(redis_url, queue_name, 12)
    got = records(cli("events", queue_name, "--json", "--count", "100"))
    assert sorted(e["job"] for e in got) == sorted(f"evt_{i}" for i in range(12))
    assert {e["partition"] for e in got} == {home(i) for i in range(12)}
    assert all(e["partition"] == home(int(e["job"][4:])) for e in got)
    times = [id_key(e["id"])[0] for e in got]
    assert times == sorted(times, reverse=True)
    assert [e["job"] for e in records(cli("events", queue_name, "--json", "--count", "3"))] \
        == [e["job"] for e in got[:3]]
    text = ok(cli("events", queue_name, "--count", "1")).stdout
    assert f"partition={got[0]['partition']}" in text


def test_one_partition_and_a_partition_that_does_not_exist(cli: Any, redis_url: str,
                                                           queue_name: str) -> None:
    add_keyed(redis_url, queue_name, 20)
    target = home(0)
    got = records(cli("events", queue_name, "--json", "--partition", str(target),
                      "--oldest-first", "--count", "100"))
    assert [e["job"] for e in got] == [f"evt_{i}" for i in range(20) if home(i) == target]
    result = cli("events", queue_name, "--partition", "9")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "partition 9 does not exist" in lines[0], result.stderr
    result = cli("events", queue_name, "--since", "0-0,0-0")
    assert result.exit_code == 2 and "the queue has 4 partitions" in result.stderr


def test_since_the_printed_cursor_resumes_every_partition(cli: Any, redis_url: str,
                                                          queue_name: str) -> None:
    add_keyed(redis_url, queue_name, 16)
    first = records(cli("events", queue_name, "--json", "--since", "0", "--count", "5"))
    assert len(first) == 5 and all("cursor" in e for e in first)
    add_keyed(redis_url, queue_name, 16, start=16)
    rest = records(cli("events", queue_name, "--json", "--since", first[-1]["cursor"],
                       "--count", "1000"))
    jobs = [e["job"] for e in first + rest]
    assert sorted(jobs) == sorted(f"evt_{i}" for i in range(32)) and len(set(jobs)) == 32


def test_follow_prints_new_events_of_every_partition(redis_url: str, queue_name: str) -> None:
    add_keyed(redis_url, queue_name, 4)
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("STREAMFLOW_") and k.upper() != "REDIS_URL"}
    env["PYTHONPATH"] = str(REPO)
    with subprocess.Popen(
            [sys.executable, "-m", "streamflow", "--redis-url", redis_url, "events",
             queue_name, "--follow", "--json", "--count", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            history = [orjson.loads(proc.stdout.readline()) for _ in range(2)]
            add_keyed(redis_url, queue_name, 12, start=100)
            new = [orjson.loads(proc.stdout.readline()) for _ in range(12)]
        finally:
            proc.kill()
    assert len({e["job"] for e in history} & {f"evt_{i}" for i in range(4)}) == 2
    assert sorted(e["job"] for e in new) == sorted(f"evt_{i}" for i in range(100, 112))
    assert {e["partition"] for e in new} == {home(i) for i in range(100, 112)}


def test_metrics_sum_the_partitions_or_show_one(cli: Any, redis_url: str,
                                                queue_name: str) -> None:
    add_keyed(redis_url, queue_name, 20)

    async def run_jobs() -> None:
        from streamflow import Worker
        from tests.support import fast_settings, running, wait_until

        settings = fast_settings(redis_url)
        worker = Worker(queue_name, lambda job: None, settings=settings, concurrency=4)
        async with running(worker):
            await wait_until(lambda: worker.processed == 20)

    anyio.run(run_jobs)

    def completed(*args: str) -> int:
        got = orjson.loads(ok(cli("metrics", queue_name, "--json", *args)).stdout)
        return sum(minute["completed"] for minute in got)

    assert completed() == 20
    assert [completed("--partition", str(i)) for i in range(PARTITIONS)] == [
        sum(home(n) == i for n in range(20)) for i in range(PARTITIONS)]
    result = cli("metrics", queue_name, "--partition", "4")
    assert result.exit_code == 2 and "partition 4 does not exist" in result.stderr
