"""ACL users of deploy/redis/users.acl, scoped to the queue ``payments``: producer, worker and
monitor can each do their whole job (producer and worker call the Lua moves by FCALL only, with
no EVAL, EVALSHA or SCRIPT right), every move the review found too wide is refused with one
line naming the missing right, and a user without a right gets one clear line from the CLI.

The server loads a copy of the real file with the placeholder passwords replaced (as
users.acl.md asks) plus one made-up user ``nobody`` that may only PING. At the end, Redis's
``ACL LOG`` must hold no refusal for ``streamflow-producer`` or ``streamflow-worker``: a command
refused inside a loop that swallows errors would otherwise go unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from streamflow import Discard, Job, JobSpec, Queue, StreamflowSettings, Worker, scripts
from streamflow.connection import eviction_policy, warn_if_evicting
from streamflow.retention import remove_gone_consumers, trim_streams
from tests.servers import RedisProcess
from tests.support import fast_settings, running, wait_until
from tests.workers import ROOT

pytestmark = pytest.mark.anyio

ACL_FILE = ROOT / "deploy" / "redis" / "users.acl"
QUEUE = "payments"  # the queue the shipped users are scoped to
PASSWORDS = {"admin": "adm-pw", "streamflow-worker": "wrk-pw", "streamflow-producer": "prd-pw",
             "monitor": "mon-pw", "replica": "rep-pw", "sentinel": "snt-pw", "nobody": "nob-pw"}
PLACEHOLDER = {"admin": "admin", "streamflow-worker": "worker", "streamflow-producer": "producer",
               "monitor": "monitor", "replica": "replica", "sentinel": "sentinel"}


def acl_text() -> str:
    text = ACL_FILE.read_text()
    for user, word in PLACEHOLDER.items():
        placeholder = f">CHANGE_ME_{word}_password"
        assert placeholder in text, f"{placeholder} not in users.acl"
        text = text.replace(placeholder, f">{PASSWORDS[user]}")
    assert "CHANGE_ME" not in text
    return text + f"user nobody on >{PASSWORDS['nobody']} resetkeys resetchannels -@all +ping\n"


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A Redis running the ACL users of deploy/redis/users.acl.

    It starts with an open ``default`` user (the fixture's readiness probe does not
    authenticate), then the real file is written in place and loaded with ACL LOAD, which
    turns ``default`` off.
    """
    yield from _serve_acl(tmp_path_factory.mktemp("redis-acl"))


def _serve_acl(directory: Path) -> Iterator[RedisProcess]:
    aclfile = directory / "users.acl"
    aclfile.write_text("user default on nopass ~* &* +@all\n")
    server = RedisProcess(directory, config=[f"aclfile {aclfile}", "maxmemory-policy noeviction"])
    with server:
        aclfile.write_text(acl_text())
        with server.client() as client:
            client.execute_command("ACL", "LOAD")
        with admin(server) as client:
            client.execute_command("ACL", "LOG", "RESET")
        yield server


def url_of(server: RedisProcess, user: str) -> str:
    return f"redis://{user}:{PASSWORDS[user]}@{server.host}:{server.port}/0"


def admin(server: RedisProcess) -> redis.Redis:
    return server.client(username="admin", password=PASSWORDS["admin"])


def settings_for(server: RedisProcess, user: str) -> StreamflowSettings:
    settings = fast_settings(url_of(server, user))
    settings.worker.stalled_interval = 0.5
    settings.worker.janitor_interval = 0.5
    settings.worker.heartbeat_interval = 0.2
    return settings


def refusals(server: RedisProcess, *users: str) -> list[dict[str, Any]]:
    with admin(server) as client:
        entries = client.execute_command("ACL", "LOG", "128")
    found = []
    for raw in entries:
        entry = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
        entry = {(k.decode() if isinstance(k, bytes) else k):
                 (v.decode() if isinstance(v, bytes) else v) for k, v in entry.items()}
        if entry.get("username") in users:
            found.append(entry)
    return found


async def test_producer_and_worker_do_their_whole_job(acl_server: RedisProcess) -> None:
    queue_name = QUEUE
    # Producers and workers may not load Lua (FUNCTION LOAD or SCRIPT LOAD + EVALSHA is
    # arbitrary Lua): an admin loads the functions library once per streamflow version.
    result = cli(acl_server, "admin", "load-functions")
    assert result.returncode == 0, result.stderr
    assert scripts.LIBRARY.name in result.stdout
    producer = settings_for(acl_server, "streamflow-producer")
    worker_settings = settings_for(acl_server, "streamflow-worker")
    attempts: dict[str, int] = {}

    async def handler(job: Job) -> dict[str, int]:
        attempts[job.id] = attempts.get(job.id, 0) + 1
        if job.name == "flaky" and job.attempt == 1:
            raise RuntimeError("first attempt fails")
        if job.name == "doomed":
            raise Discard("not for us")
        return {"attempt": job.attempt}

    async with Queue(queue_name, settings=producer) as q:
        # Producer: single add, bulk with caller ids, dedup, delayed, priority, replicated.
        assert await scripts.load_scripts(q.client) == "fcall"
        await q.add("ok", {"n": 0}, job_id="single")
        ids = await q.add_bulk([JobSpec("ok", {"n": i}, job_id=f"bulk-{i}") for i in range(20)])
        assert all(ids)
        assert await q.add("ok", {"n": 0}, job_id="bulk-0") is None
        await q.add("ok", {"n": 2}, job_id="urgent", priority="high")
        await q.add("flaky", {}, job_id="flaky")
        await q.add("doomed", {}, job_id="doomed")
        await q.add("ok", {"n": 3}, job_id="replicated", durability="none")
    # Delayed jobs and queue settings are the worker user's (a producer may not write the
    # delayed records or the meta hash).
    async with Queue(queue_name, settings=worker_settings) as scheduler:
        await scheduler.add("ok", {"n": 1}, job_id="later", delay=0.2)
        if hasattr(scheduler, "set_rate_limit"):  # the fetch script's limiter runs as the worker
            await scheduler.set_rate_limit(10_000, 1.0)
    async with Queue(queue_name, settings=producer) as q:
        counts = await q.counts()
        assert counts["waiting"] == 25 and counts["delayed"] == 1

        # A consumer that fetched one entry and went away: the worker must reclaim it.
        async with aioredis.Redis.from_url(url_of(acl_server, "streamflow-worker")) as raw:
            fetched = await raw.xreadgroup(q.settings.worker.group, "gone",
                                           {q.keys.level("high"): ">"}, count=1)
            assert fetched[0][1][0][1][b"i"] == b"urgent"
            # The maxmemory check runs as the worker user (INFO is granted) ...
            assert await eviction_policy(raw) == "noeviction"
        # ... and does not crash a user that may not run INFO.
        async with aioredis.Redis.from_url(url_of(acl_server, "nobody")) as nobody:
            assert await warn_if_evicting(nobody) is None

        worker = Worker(queue_name, handler, settings=worker_settings, consumer="acl-worker")
        async with running(worker):
            await wait_until(lambda: len(attempts) == 26, timeout=20)
            await wait_until(lambda: attempts.get("flaky") == 2)
            await wait_until(lambda: _settled(q), timeout=20)
            # Janitor work as the worker user: exact MINID trim (the janitor's own calls have
            # removed all but the last delivered entry of each stream), consumers that are gone.
            await trim_streams(worker.client, worker.keys)
            assert all([await q.client.xlen(s) <= 1 for s in q.keys.streams])
            gone = await remove_gone_consumers(worker.client, worker.keys, worker.group,
                                               stale_after_ms=0)
            assert "gone" in gone
            assert not worker.stopped
    async with Queue(queue_name, settings=worker_settings) as operator:  # the CLI's user
        dead = await operator.dead()
        assert [entry["job_id"] for entry in dead] == ["doomed"]
        assert await operator.retry_dead() == 1
        assert await operator.purge_dead() == 0

    assert refusals(acl_server, "streamflow-producer", "streamflow-worker") == []
    with admin(acl_server) as client:
        stats = client.info("commandstats")
    assert stats["cmdstat_fcall"]["calls"] > 30  # every move went out as FCALL ...
    assert "cmdstat_evalsha" not in stats  # ... and none as EVALSHA


def test_without_the_library_workers_say_so_in_one_line(acl_server: RedisProcess) -> None:
    with admin(acl_server) as client:
        client.function_delete(scripts.LIBRARY.name)
    try:
        result = cli(acl_server, "streamflow-worker", "worker", QUEUE, "--app",
                     "tests.apps:router", "--log-level", "ERROR", timeout=30)
        assert_one_line_error(result, scripts.LIBRARY.name, "'function|load' command",
                              "streamflow load-functions")
        result = cli(acl_server, "streamflow-worker", "load-functions")
        assert_one_line_error(result, "'function|load' command")
    finally:
        result = cli(acl_server, "admin", "load-functions")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{scripts.LIBRARY.name} loaded"
    assert cli(acl_server, "admin", "load-functions").stdout.strip() == (
        f"{scripts.LIBRARY.name} already loaded")
    with admin(acl_server) as client:
        client.execute_command("ACL", "LOG", "RESET")


async def test_indexed_adds_and_job_control_need_no_more_rights(
        acl_server: RedisProcess) -> None:
    async with aioredis.Redis.from_url(url_of(acl_server, "admin")) as admin_client:
        await scripts.load_scripts(admin_client)
    producer = settings_for(acl_server, "streamflow-producer")
    async with Queue(QUEUE, settings=producer) as q:
        assert await q.add("ok", {"n": 1}, job_id="acl-indexed",
                           index={"payment_id": "pay_acl"}) == "acl-indexed"
    async with Queue(QUEUE, settings=settings_for(acl_server, "streamflow-worker")) as operator:
        [found] = await operator.find("payment_id", "pay_acl")
        assert (found.id, found.state) == ("acl-indexed", "waiting")
        assert "acl-indexed" in {j.id for j in (await operator.jobs("waiting")).jobs}
        await operator.update_data("acl-indexed", {"n": 2})
        await operator.remove("acl-indexed", actor="acl-test")
        assert [a.action for a in await operator.audit("acl-indexed")] == [
            "remove", "update_data"]
        assert await operator.job_logs("acl-indexed") == []
        assert len(await operator.metrics(since=60)) >= 1
    assert refusals(acl_server, "streamflow-producer", "streamflow-worker") == []


async def _settled(q: Queue) -> bool:
    counts = await q.counts()
    return (counts["pending"], counts["waiting"], counts["delayed"], counts["dead"]) == (0, 0, 0, 1)


def cli(server: RedisProcess, user: str, *args: str,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "streamflow", "--redis-url", url_of(server, user), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("streamflow: error:")
    for word in words:
        assert word in line, line
    return line


def test_cli_reads_as_the_worker_user(acl_server: RedisProcess) -> None:
    queue_name = QUEUE
    created = cli(acl_server, "admin", "add", queue_name, "x", "--create")
    assert created.returncode == 0, created.stderr  # reads refuse an unknown queue
    for command in (["stats", queue_name, "--json"], ["pending", queue_name],
                    ["dead", "list", queue_name]):
        result = cli(acl_server, "streamflow-worker", *command)
        assert result.returncode == 0, (command, result.stderr)


def test_cli_names_the_permission_a_user_lacks(acl_server: RedisProcess,
                                               queue_name: str) -> None:
    result = cli(acl_server, "nobody", "stats", queue_name)
    assert_one_line_error(result, "permission", "no permissions to run the '")
    assert refusals(acl_server, "nobody")  # Redis logged it: the ACL LOG check above works


def test_cli_worker_as_the_producer_user_fails_in_one_line(acl_server: RedisProcess,
                                                           ) -> None:
    result = cli(acl_server, "streamflow-producer", "worker", QUEUE, "--app",
                 "tests.apps:router", "--log-level", "ERROR", timeout=30)
    # It may call the moves (FCALL) but not write the workers' heartbeat hash.
    assert_one_line_error(result, "no permissions to access one of the keys")


# ---------------------------------------------------------------- what each user may not do

FORBIDDEN: list[tuple[str, tuple[str, ...], str]] = [
    # The producer (the internet-facing ingress's user).
    ("streamflow-producer", ("HSET", "sf:{payments}:meta", "paused", "1"),
     "access one of the keys"),
    ("streamflow-producer", ("HSET", "sf:{payments}:meta", "limited_until", "9999999999999"),
     "access one of the keys"),
    ("streamflow-producer", ("XADD", "sf:{refunds}:p:normal", "*", "n", "forged"),
     "access one of the keys"),
    # ZADD is the producer's only on the business-key indexes (an ACL selector): on the
    # delayed set the key is what Redis refuses
    ("streamflow-producer", ("ZADD", "sf:{payments}:delayed", "0", "evt_1"),
     "access one of the keys"),
    ("streamflow-producer", ("EVAL", "local i = 0 while i < 3000000 do i = i + 1 end", "0"),
     "'eval' command"),
    ("streamflow-producer", ("SCRIPT", "LOAD", "return 1"), "'script|load' command"),
    ("streamflow-producer", ("EVALSHA", scripts.ADD_JOBS.sha, "0"), "'evalsha' command"),
    ("streamflow-producer", ("FUNCTION", "LOAD", "#!lua name=x\nreturn 1"),
     "'function|load' command"),
    ("streamflow-producer", ("FUNCTION", "DELETE", scripts.LIBRARY.name),
     "'function|delete' command"),
    ("streamflow-producer", ("DEL", "sf:{payments}:p:normal"), "'del' command"),
    # The monitor (KEDA): no payloads, no customer data.
    ("monitor", ("XINFO", "STREAM", "sf:{payments}:p:high", "FULL"), "'xinfo|stream' command"),
    ("monitor", ("HGETALL", "sf:{payments}:jobs"), "'hgetall' command"),
    ("monitor", ("XRANGE", "sf:{payments}:p:high", "-", "+"), "'xrange' command"),
    ("monitor", ("XPENDING", "sf:{payments}:dead", "workers"), "access one of the keys"),
    ("monitor", ("XADD", "sf:{payments}:p:high", "*", "n", "x"), "'xadd' command"),
    # The worker: its own queue only, no arbitrary Lua by EVAL.
    ("streamflow-worker", ("XREADGROUP", "GROUP", "workers", "w", "STREAMS",
                           "sf:{refunds}:p:high", ">"), "access one of the keys"),
    ("streamflow-worker", ("EVAL", "return 1", "0"), "'eval' command"),
    ("streamflow-worker", ("EVALSHA", scripts.FETCH_JOBS.sha, "0"), "'evalsha' command"),
    ("streamflow-worker", ("SCRIPT", "LOAD", "return 1"), "'script|load' command"),
    ("streamflow-worker", ("FUNCTION", "LOAD", "#!lua name=x\nreturn 1"),
     "'function|load' command"),
    ("streamflow-worker", ("FUNCTION", "FLUSH"), "'function|flush' command"),
    ("streamflow-worker", ("FCALL_RO", scripts.LIBRARY.probe, "0"), "'fcall_ro' command"),
    ("streamflow-worker", ("KEYS", "*"), "'keys' command"),
    ("streamflow-worker", ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
     "'config|set' command"),
]


@pytest.mark.parametrize(("user", "command", "right"), FORBIDDEN,
                         ids=[f"{u}-{' '.join(c[:2])}" for u, c, _ in FORBIDDEN])
def test_each_forbidden_move_is_refused_naming_the_right(acl_server: RedisProcess, user: str,
                                                         command: tuple[str, ...],
                                                         right: str) -> None:
    with acl_server.client(username=user, password=PASSWORDS[user]) as client:
        with pytest.raises(redis.exceptions.NoPermissionError) as refused:
            client.execute_command(*command)
    message = str(refused.value)
    assert "\n" not in message and right in message, message
    assert "no permissions" in message.lower(), message


def test_the_monitor_reads_what_keda_reads(acl_server: RedisProcess) -> None:
    with admin(acl_server) as client:
        with contextlib.suppress(redis.ResponseError):  # the worker test may have made it
            client.xgroup_create("sf:{payments}:p:low", "workers", id="0", mkstream=True)
        client.xadd("sf:{payments}:p:low", {"n": "keda"})
    with acl_server.client(username="monitor", password=PASSWORDS["monitor"]) as monitor:
        assert monitor.xlen("sf:{payments}:p:low") >= 1
        groups = monitor.xinfo_groups("sf:{payments}:p:low")
        assert any(g["name"] == b"workers" for g in groups)
        assert "pending" in monitor.xpending("sf:{payments}:p:low", "workers")
        assert monitor.ping()


@pytest.fixture
def fresh_acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """The same users on a server of its own (a queue's partition count is fixed once used)."""
    yield from _serve_acl(tmp_path_factory.mktemp("redis-acl-fresh"))


async def test_partitioned_ordered_queues_need_no_more_rights(
        fresh_acl_server: RedisProcess) -> None:
    server = fresh_acl_server
    async with aioredis.Redis.from_url(url_of(server, "admin")) as admin_client:
        await scripts.load_scripts(admin_client)
    done: list[tuple[str, int]] = []

    async def handler(job: Job) -> None:
        done.append((job.data["key"], job.data["seq"]))

    producer = settings_for(server, "streamflow-producer")
    worker_settings = settings_for(server, "streamflow-worker")
    for settings in (producer, worker_settings):
        settings.queue.partitions = 3
    async with Queue(QUEUE, settings=worker_settings, ordered=True) as operator:
        await operator.ensure_group()  # the worker user creates the layout, as a worker would
    async with Queue(QUEUE, settings=producer, ordered=True) as q:
        for seq in range(3):
            for key in ("pay_a", "pay_b", "pay_c", "pay_d"):
                assert await q.add("pay", {"key": key, "seq": seq}, key=key,
                                   job_id=f"{key}-{seq}") == f"{key}-{seq}"
        assert await q.add("pay", {"key": "pay_a", "seq": 0}, key="pay_a",
                           job_id="pay_a-0") is None  # dedup holds
        counts = await q.counts()
        assert counts["waiting"] + counts["held"] == 12
        async with running(Worker(QUEUE, handler, settings=worker_settings)):
            await wait_until(lambda: len(done) == 12, timeout=20)
    for key in ("pay_a", "pay_b", "pay_c", "pay_d"):
        assert [seq for k, seq in done if k == key] == [0, 1, 2]
    with admin(server) as client:  # the partitions are spread: the keys are not all {payments}
        assert client.keys("sf:{payments#*}:*")
    assert refusals(server, "streamflow-producer", "streamflow-worker") == []
