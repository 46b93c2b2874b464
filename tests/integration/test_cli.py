"""The ``streamflow`` command against a real Redis: typer's CliRunner on the real app, and
``python -m streamflow`` where the process exit code is the point."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import redis
from typer.testing import Result

from streamflow import Discard, Job, Queue, StreamflowSettings, Worker
from streamflow.codec import decode_job
from streamflow.keys import QueueKeys
from tests.support import fast_settings, running, wait_until

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
def sync_redis(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)




def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def add_jobs(redis_url: str, queue: str, jobs: Sequence[tuple[str, str | None]],
             group: bool = True, events: str = "all") -> list[str | None]:
    """Add ``(name, priority)`` jobs with the library; creates the group first if asked.
    ``events="all"``: each add writes an added event (the events commands read them)."""

    async def go() -> list[str | None]:
        settings = StreamflowSettings.from_url(redis_url)
        settings.queue.events = events  # type: ignore[assignment]
        queue_ = Queue(queue, settings=settings)
        try:
            if group:
                await queue_.ensure_group()
            return [await queue_.add(name, {"n": i}, priority=priority)
                    for i, (name, priority) in enumerate(jobs)]
        finally:
            await queue_.close()

    return anyio.run(go)


def make_dead(redis_url: str, queue: str, count: int) -> list[str | None]:
    """Run a short worker whose handler discards every job, until ``count`` are dead."""
    settings = fast_settings(redis_url)

    async def discard(job: Job) -> None:
        raise Discard(f"card declined for {job.data['n']}")

    async def go() -> list[str | None]:
        async with Queue(queue, settings=settings) as producer:
            ids = [await producer.add("charge", {"n": i}) for i in range(count)]
            worker = Worker(queue, discard, settings=settings, concurrency=4)
            async with running(worker):
                async def all_dead() -> bool:
                    return (await producer.counts())["dead"] >= count
                await wait_until(all_dead)
            return ids

    return anyio.run(go)


# ----------------------------------------------------------------------------------- add


def test_add_prints_the_id_and_the_job_is_in_the_stream(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    result = ok(cli("add", "--create", queue_name, "payment.captured", "--data", '{"id": "pay_1"}',
                    "--priority", "high", "--attempts", "5", "--backoff", "fixed:250ms"))
    job_id = result.stdout.strip()
    assert result.stderr == ""
    [(entry_id, fields)] = sync_redis.xrange(keys.level("high"))
    assert job_id == f"high:{entry_id.decode()}"
    job = decode_job(entry_id, fields, queue_name, "high")
    assert (job.id, job.name, job.data) == (job_id, "payment.captured", {"id": "pay_1"})
    assert job.options.attempts == 5
    assert job.options.backoff is not None
    assert (job.options.backoff.kind, job.options.backoff.delay) == ("fixed", 0.25)


def test_add_defaults_to_the_default_level(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    job_id = ok(cli("add", "--create", queue_name, "ping")).stdout.strip()
    assert job_id.startswith("normal:")
    [(_, fields)] = sync_redis.xrange(keys.level("normal"))
    assert fields[b"d"] == b"null"


def test_add_with_delay_goes_to_the_delayed_set(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    job_id = ok(cli("add", "--create", queue_name, "remind", "--delay", "1h")).stdout.strip()
    score = sync_redis.zscore(keys.delayed, job_id)
    assert score is not None
    assert [sync_redis.xlen(s) for s in keys.streams] == [0, 0, 0]


def test_add_under_another_prefix(
    cli: Any, queue_name: str, sync_redis: Any
) -> None:
    ok(cli("--prefix", "pay", "add", "--create", queue_name, "x"))
    assert sync_redis.xlen(QueueKeys(queue_name, prefix="pay").level("normal")) == 1
    assert sync_redis.exists(QueueKeys(queue_name).level("normal")) == 0


def test_add_with_job_id_twice_is_refused_the_second_time(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    first = ok(cli("add", "--create", queue_name, "webhook", "--job-id", "evt_42"))
    assert first.stdout.strip() == "evt_42"
    second = ok(cli("add", "--create", queue_name, "webhook", "--job-id", "evt_42"))
    assert second.stdout == ""
    assert "duplicate" in second.stderr and "evt_42" in second.stderr
    assert sync_redis.xlen(keys.level("normal")) == 1


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("STREAMFLOW_") and k.upper() != "REDIS_URL"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "streamflow", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_add_unknown_priority_exits_2_and_writes_nothing(
    redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    proc = run_module("--redis-url", redis_url, "add", queue_name, "x", "--priority", "urgent")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == (
        "streamflow: error: unknown priority 'urgent'; levels are high, normal, low")
    assert sync_redis.exists(*keys.streams, keys.events) == 0


def test_module_entry_point_adds_with_exit_0(
    redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    proc = run_module("--redis-url", redis_url, "add", queue_name, "x", "--priority", "low",
                      "--create")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("low:")
    assert sync_redis.xlen(keys.level("low")) == 1


def test_add_priority_urgent_exit_2_in_process(cli: Any, queue_name: str) -> None:
    result = cli("add", "--create", queue_name, "x", "--priority", "urgent")
    assert result.exit_code == 2
    assert "unknown priority 'urgent'" in one_line_error(result)


# --------------------------------------------------------------------------------- stats


def test_stats_json_shows_waiting_per_level(
    cli: Any, redis_url: str, queue_name: str
) -> None:
    add_jobs(redis_url, queue_name, [("a", "high"), ("b", "high"), ("c", "low")])
    counts = orjson.loads(ok(cli("stats", queue_name, "--json")).stdout)
    assert {level: c["waiting"] for level, c in counts["levels"].items()} == {
        "high": 2, "normal": 0, "low": 1}
    assert (counts["waiting"], counts["pending"], counts["delayed"], counts["dead"]) == (
        3, 0, 0, 0)
    assert counts["groups"] == ["workers"]
    assert counts["paused"] is False


def test_stats_without_a_group_counts_the_stream(
    cli: Any, redis_url: str, queue_name: str
) -> None:
    add_jobs(redis_url, queue_name, [("a", "normal")], group=False)
    counts = orjson.loads(ok(cli("stats", queue_name, "--json")).stdout)
    assert counts["levels"]["normal"]["waiting"] == 1
    assert counts["groups"] == []


def test_stats_table(cli: Any, redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, [("a", "high")])
    out = ok(cli("stats", queue_name)).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["high"][0] == "1"
    assert rows["normal"][0] == "0"


# ------------------------------------------------------------------------------- pending


@pytest.fixture
def read_by_hand(redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
                 ) -> list[str]:
    """Three normal entries delivered by hand: two to c1 (one of them idle 100 s), one to c2."""
    add_jobs(redis_url, queue_name, [("a", None), ("b", None), ("c", None)])
    stream = keys.level("normal")
    got = sync_redis.xreadgroup("workers", "c1", {stream: ">"}, count=2)
    got += sync_redis.xreadgroup("workers", "c2", {stream: ">"}, count=1)
    ids = [entry_id.decode() for _, entries in got for entry_id, _ in entries]
    sync_redis.xclaim(stream, "workers", "c1", 0, [ids[0]], idle=100_000, retrycount=1)
    return ids


def test_pending_json(cli: Any, queue_name: str, read_by_hand: list[str]) -> None:
    report = orjson.loads(ok(cli("pending", queue_name, "--json")).stdout)
    normal = report["summary"]["normal"]
    assert normal["pending"] == 3
    assert normal["consumers"] == {"c1": 2, "c2": 1}
    assert (normal["min"], normal["max"]) == (read_by_hand[0], read_by_hand[2])
    assert report["summary"]["high"]["pending"] == 0
    assert [(e["entry_id"], e["consumer"], e["level"]) for e in report["entries"]] == [
        (read_by_hand[0], "c1", "normal"), (read_by_hand[1], "c1", "normal"),
        (read_by_hand[2], "c2", "normal")]
    assert report["entries"][0]["idle_ms"] >= 100_000


def test_pending_filters(cli: Any, queue_name: str, read_by_hand: list[str]) -> None:
    by_c2 = orjson.loads(ok(cli("pending", queue_name, "--json", "--consumer", "c2")).stdout)
    assert [e["entry_id"] for e in by_c2["entries"]] == [read_by_hand[2]]
    idle = orjson.loads(ok(cli("pending", queue_name, "--json", "--min-idle", "60s")).stdout)
    assert [e["entry_id"] for e in idle["entries"]] == [read_by_hand[0]]
    both = orjson.loads(ok(cli("pending", queue_name, "--json", "--consumer", "c2",
                               "--min-idle", "1m")).stdout)
    assert both["entries"] == []
    limited = orjson.loads(ok(cli("pending", queue_name, "--json", "--count", "1")).stdout)
    assert len(limited["entries"]) == 1


def test_pending_table(cli: Any, queue_name: str, read_by_hand: list[str]) -> None:
    out = ok(cli("pending", queue_name)).stdout
    assert "c1=2, c2=1" in out
    assert read_by_hand[0] in out
    summary_row = next(line for line in out.splitlines() if line.startswith("normal"))
    assert summary_row.split()[1] == "3"


def test_pending_of_an_empty_queue(cli: Any, redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, [])
    report = orjson.loads(ok(cli("pending", queue_name, "--json")).stdout)
    assert report["entries"] == []
    assert {level: s["pending"] for level, s in report["summary"].items()} == {
        "high": 0, "normal": 0, "low": 0}


# --------------------------------------------------------------------------------- claim


def test_claim_puts_pending_entries_back(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any, read_by_hand: list[str]
) -> None:
    out = ok(cli("claim", queue_name, "--min-idle", "60s")).stdout
    assert out.strip() == "1 stalled entries put back"
    stream = keys.level("normal")
    assert sync_redis.xpending(stream, "workers")["pending"] == 2

    out = ok(cli("claim", queue_name, "--min-idle", "0s")).stdout
    assert out.strip() == "2 stalled entries put back"
    assert sync_redis.xpending(stream, "workers")["pending"] == 0
    again = sync_redis.xreadgroup("workers", "c3", {stream: ">"})
    names = sorted(fields[b"n"] for _, entries in again for _, fields in entries)
    assert names == [b"a", b"b", b"c"]
    counts = orjson.loads(ok(cli("stats", queue_name, "--json")).stdout)
    # c1, c2, c3: the CLI's claimer left no consumer behind
    assert counts["group_consumers"] == 3
    assert counts["consumers"] == 0  # live workers: none has a heartbeat


# ---------------------------------------------------------------------------------- dead


def test_dead_list_and_retry(
    cli: Any, redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    ids = make_dead(redis_url, queue_name, 3)

    entries = orjson.loads(ok(cli("dead", "list", queue_name, "--json")).stdout)
    assert sorted(e["job_id"] for e in entries) == sorted(ids)  # type: ignore[type-var]
    assert {(e["name"], e["reason"], e["level"]) for e in entries} == {
        ("charge", "discarded", "normal")}
    assert sorted(e["error"] for e in entries) == [
        f"card declined for {i}" for i in range(3)]

    table = ok(cli("dead", "list", queue_name)).stdout
    assert table.count("discarded") == 3
    assert "card declined" in table

    first = entries[0]["entry_id"]
    assert ok(cli("dead", "retry", queue_name, first)).stdout.strip() == "1 jobs put back"
    assert sync_redis.xlen(keys.dead) == 2
    back = sync_redis.xrevrange(keys.level("normal"), count=1)[0]
    job = decode_job(back[0], back[1], queue_name, "normal")
    assert (job.id, job.attempt) == (entries[0]["job_id"], 1)

    assert ok(cli("dead", "retry", queue_name)).stdout.strip() == "2 jobs put back"
    assert sync_redis.xlen(keys.dead) == 0
    assert orjson.loads(ok(cli("stats", queue_name, "--json")).stdout)["waiting"] == 3
    assert ok(cli("dead", "list", queue_name)).stdout.strip() == "no dead-lettered jobs"


def test_dead_purge(
    cli: Any, redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    make_dead(redis_url, queue_name, 3)
    entries = orjson.loads(ok(cli("dead", "list", queue_name, "--json")).stdout)

    one = ok(cli("dead", "purge", queue_name, entries[0]["entry_id"]))
    assert one.stdout.strip() == "1 dead-lettered jobs deleted"
    assert sync_redis.xlen(keys.dead) == 2

    refused = cli("dead", "purge", queue_name, input="n\n")
    assert refused.exit_code != 0
    assert sync_redis.xlen(keys.dead) == 2

    rest = ok(cli("dead", "purge", queue_name, "--yes"))
    assert rest.stdout.strip() == "2 dead-lettered jobs deleted"
    assert sync_redis.exists(keys.dead) == 0


# -------------------------------------------------------------------------- pause/resume


def test_pause_and_resume_set_the_flag(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    assert ok(cli("pause", queue_name, "--create")).stdout.strip() == f"{queue_name} paused"
    assert sync_redis.hget(keys.meta, "paused") == b"1"
    assert orjson.loads(ok(cli("stats", queue_name, "--json")).stdout)["paused"] is True
    assert ok(cli("resume", queue_name)).stdout.strip() == f"{queue_name} resumed"
    assert sync_redis.hget(keys.meta, "paused") == b"0"
    assert orjson.loads(ok(cli("stats", queue_name, "--json")).stdout)["paused"] is False


# -------------------------------------------------------------------------------- events


def test_events_json(cli: Any, redis_url: str, queue_name: str) -> None:
    ids = add_jobs(redis_url, queue_name, [("a", "high"), ("b", None)])
    ok(cli("pause", queue_name))
    lines = ok(cli("events", queue_name, "--json")).stdout.splitlines()
    events = [orjson.loads(line) for line in lines]
    # newest first, full field names
    assert [(e["event"], e.get("job"), e.get("name")) for e in events] == [
        ("paused", None, None), ("added", ids[1], "b"), ("added", ids[0], "a")]
    assert all(e["id"] and e["time"].startswith("20") for e in events)

    oldest_first = ok(cli("events", queue_name, "--json", "--oldest-first")).stdout
    assert [orjson.loads(line)["event"] for line in oldest_first.splitlines()] == [
        "added", "added", "paused"]
    since = ok(cli("events", queue_name, "--json", "--since", events[2]["id"])).stdout
    assert [orjson.loads(line)["event"] for line in since.splitlines()] == ["added", "paused"]
    limited = ok(cli("events", queue_name, "--json", "--count", "1")).stdout.splitlines()
    assert [orjson.loads(line)["event"] for line in limited] == ["paused"]


def test_events_text(cli: Any, redis_url: str, queue_name: str) -> None:
    [job_id] = add_jobs(redis_url, queue_name, [("hello", None)])
    out = ok(cli("events", queue_name)).stdout
    assert "added" in out and f"job={job_id}" in out and "name=hello" in out
    assert " i=" not in out and " n=" not in out
    day = out.split()[0]
    assert len(day) == 10 and day.count("-") == 2  # 2026-12-01 10:05:34.123, not raw ms


def test_events_of_a_queue_without_events(cli: Any, redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, [], group=True)
    assert ok(cli("events", queue_name, "--json")).stdout == ""


# ------------------------------------------------------------------------------ --help


@pytest.mark.parametrize("command", [[], ["add"], ["pending"], ["dead"], ["dead", "purge"],
                                     ["claim"], ["events"], ["worker"]])
def test_every_command_has_help(cli: Any, command: list[str]) -> None:
    result = ok(cli(*command, "--help"))
    assert "Usage:" in result.stdout


# ------------------------------------------------------------------------ refused input


def test_add_payload_over_the_limit_exits_2_and_writes_nothing(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    result = cli("add", "--create", queue_name, "x", "--data", '"' + "a" * 600_000 + '"')
    assert result.exit_code == 2
    assert "over the limit of 524288" in one_line_error(result)
    assert result.stdout == ""
    assert sync_redis.exists(*keys.streams, keys.events) == 0


def test_add_with_an_empty_job_name_is_refused(
    cli: Any, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    result = cli("add", "--create", queue_name, "")
    assert sync_redis.exists(*keys.streams) == 0
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "args", [["events", "{q}", "--since", "garbage"]], ids=["events-since"],
)
def test_malformed_entry_ids_are_usage_errors(
    redis_url: str, queue_name: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from streamflow.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--redis-url", redis_url, *(a.replace("{q}", queue_name) for a in args)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a stream entry id" in err[0]


# ------------------------------------------------- issue 18: typos, unknown queues, ids


def test_a_typo_in_a_read_command_names_the_known_queues(
    cli: Any, redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    add_jobs(redis_url, queue_name, [("a", None)])
    typo = queue_name + "x"
    for command in (["stats", typo], ["pending", typo], ["events", typo], ["job", typo, "j"],
                    ["dead", "list", typo], ["repeat", "list", typo]):
        result = cli(*command)
        assert result.exit_code == 2, command
        line = one_line_error(result)
        assert f"unknown queue {typo!r}" in line and queue_name in line
    assert not sync_redis.keys(f"*{typo}*")
    listed = orjson.loads(ok(cli("queues", "--json")).stdout)
    assert queue_name in [row["queue"] for row in listed]
    assert queue_name in ok(cli("queues")).stdout


def test_a_typo_in_a_write_command_writes_nothing_without_create(
    cli: Any, redis_url: str, queue_name: str, sync_redis: Any
) -> None:
    add_jobs(redis_url, queue_name, [("a", None)])
    typo = queue_name + "x"
    for command in (["pause", typo], ["resume", typo], ["add", typo, "job"],
                    ["repeat", "add", typo, "job", "--every", "1m"]):
        result = cli(*command)
        assert result.exit_code == 2, command
        line = one_line_error(result)
        assert "--create" in line and queue_name in line
    assert not sync_redis.keys(f"*{typo}*")
    ok(cli("pause", typo, "--create"))
    assert sync_redis.keys(f"*{typo}*")


def test_job_takes_the_id_add_printed(
    cli: Any, redis_url: str, queue_name: str
) -> None:
    job_id = ok(cli("add", queue_name, "ping", "--create", "--data", '{"n": 1}')).stdout.strip()
    info = orjson.loads(ok(cli("job", queue_name, job_id, "--json")).stdout)
    assert (info["id"], info["name"], info["state"]) == (job_id, "ping", "waiting")

    settings = fast_settings(redis_url)

    async def double(job: Job) -> dict[str, int]:
        return {"twice": job.data["n"] * 2}

    async def work() -> None:
        async with Queue(queue_name, settings=settings) as producer:
            async with running(Worker(queue_name, double, settings=settings)):
                async def done() -> bool:
                    counts = await producer.counts()
                    return counts["waiting"] + counts["pending"] == 0
                await wait_until(done)

    anyio.run(work)
    info = orjson.loads(ok(cli("job", queue_name, job_id, "--json")).stdout)
    assert (info["state"], info["result"]) == ("completed", {"twice": 2})
    text = ok(cli("job", queue_name, job_id)).stdout
    assert 'result       {"twice":2}' in text  # JSON, not a Python repr
    assert "finished     20" in text


def test_job_names_a_delayed_job_without_events_of_its_add(cli: Any, queue_name: str) -> None:
    # by default (events="outcomes") no delayed event tells the name and add time: the
    # envelope kept in the delayed set does
    before = int(time.time() * 1000)
    job_id = ok(cli("add", queue_name, "remind", "--create", "--delay", "1h")).stdout.strip()
    info = orjson.loads(ok(cli("job", queue_name, job_id, "--json")).stdout)
    assert (info["id"], info["name"], info["state"]) == (job_id, "remind", "delayed")
    assert before <= info["added_ms"] <= int(time.time() * 1000)


def test_dead_retry_and_purge_take_job_ids(
    cli: Any, redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    ids = make_dead(redis_url, queue_name, 3)
    assert all(ids)
    info = orjson.loads(ok(cli("job", queue_name, str(ids[0]), "--json")).stdout)
    assert (info["state"], info["reason"]) == ("dead", "discarded")
    assert "card declined for 0" in (info["error"] or "")

    assert ok(cli("dead", "retry", queue_name, str(ids[0]))).stdout.strip() == "1 jobs put back"
    remaining = {e["job_id"] for e in orjson.loads(ok(cli("dead", "list", queue_name,
                                                          "--json")).stdout)}
    assert remaining == {ids[1], ids[2]}
    assert ok(cli("dead", "purge", queue_name, str(ids[1]))).stdout.strip() == \
        "1 dead-lettered jobs deleted"
    refused = cli("dead", "purge", queue_name, "no-such-job", str(ids[2]))
    assert refused.exit_code == 2 and "no-such-job" in one_line_error(refused)
    assert sync_redis.xlen(keys.dead) == 1  # nothing changed by the refused command
    table = ok(cli("dead", "list", queue_name)).stdout
    assert table.splitlines()[0].startswith("job id")


def test_pending_shows_job_ids(cli: Any, queue_name: str, read_by_hand: list[str]) -> None:
    report = orjson.loads(ok(cli("pending", queue_name, "--json")).stdout)
    assert [e["job_id"] for e in report["entries"]] == [f"normal:{i}" for i in read_by_hand]
    assert f"normal:{read_by_hand[0]}" in ok(cli("pending", queue_name)).stdout


def test_repeat_keys_need_no_quoting_and_list_shows_the_next_run(
    cli: Any, redis_url: str, queue_name: str
) -> None:
    key = ok(cli("repeat", "add", queue_name, "daily_report", "--cron", "0 9 * * *",
                 "--create")).stdout.strip()
    assert " " not in key and "*" not in key
    add_jobs(redis_url, queue_name, [])
    assert "next run (UTC)" in ok(cli("repeat", "list", queue_name)).stdout
    assert ok(cli("repeat", "remove", queue_name, key)).stdout.strip() == f"removed {key}"


def test_obliterate_names_the_cli_flag(cli: Any, redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url)

    async def hold() -> None:
        async with Queue(queue_name, settings=settings) as q:
            async with running(Worker(queue_name, lambda job: None, settings=settings)):
                await wait_until(lambda: _has_worker(q))
                result = await anyio.to_thread.run_sync(
                    lambda: cli("obliterate", queue_name, "--yes"))
                assert result.exit_code == 2
                line = one_line_error(result)
                assert "--force" in line and "force=True" not in line

    anyio.run(hold)


async def _has_worker(q: Queue) -> bool:
    return bool(await q.client.hlen(q.keys.workers))


def test_stats_counts_live_workers_only(
    cli: Any, redis_url: str, queue_name: str, keys: QueueKeys, sync_redis: Any
) -> None:
    add_jobs(redis_url, queue_name, [("a", None)])
    stream = keys.level("normal")
    sync_redis.xreadgroup("workers", "exited-long-ago", {stream: ">"}, count=1)
    counts = orjson.loads(ok(cli("stats", queue_name, "--json")).stdout)
    assert counts["group_consumers"] == 1 and counts["consumers"] == 0
    assert "live workers" in ok(cli("stats", queue_name)).stdout


def test_events_into_a_closed_pipe_is_quiet(redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, [("x" * 200, None)] * 400)
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("STREAMFLOW_") and k.upper() != "REDIS_URL"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        f"'{sys.executable}' -m streamflow events {queue_name} --count 400 "
        f"--redis-url {redis_url} | head -1; echo rc=${{PIPESTATUS[0]}} >&2",
        shell=True, executable="/bin/bash", capture_output=True, text=True, env=env,
        timeout=60, check=False)
    assert proc.stdout.count("\n") == 1
    assert proc.stderr.strip() == "rc=0", proc.stderr
