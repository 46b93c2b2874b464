"""Sentinels configured as the shipped ``sentinel.conf`` asks (ACL users, ``default`` off,
``sentinel-user``/``sentinel-pass`` between sentinels), on a real master + replica + 3
sentinels: nobody unauthenticated can re-point the master, the client user cannot either,
streamflow's clients work with the sentinel credentials, and a failover still happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamflow import Queue, StreamflowSettings, Worker
from streamflow.job import Job
from tests.servers import HOST, SentinelTopology
from tests.support import fast_settings, running, wait_until
from tests.workers import ROOT

pytestmark = pytest.mark.anyio

PASSWORDS = {"sentinel_admin": "sa-pw", "sentinel_peer": "sp-pw", "sentinel_client": "sc-pw"}
FORBIDDEN = [
    ("SENTINEL", "MONITOR", "evil", HOST, "6390", "2"),
    ("SENTINEL", "REMOVE", "streamflow"),
    ("SENTINEL", "SET", "streamflow", "down-after-milliseconds", "1"),
    ("SENTINEL", "FAILOVER", "streamflow"),
    ("SENTINEL", "RESET", "*"),
    ("SENTINEL", "CONFIG", "SET", "resolve-hostnames", "no"),
    ("ACL", "SETUSER", "default", "on", "nopass", "+@all"),
]


def shipped_auth_lines() -> list[str]:
    """The authentication lines of the shipped sentinel.conf, placeholders filled in.

    ``sentinel auth-user``/``auth-pass`` (towards Redis) are left out: this topology's data
    nodes run without ACL; test_acl.py covers the Redis side."""
    lines = []
    for line in (ROOT / "sentinel.conf").read_text().splitlines():
        if line.startswith(("user ", "sentinel sentinel-user ", "sentinel sentinel-pass ",
                            "protected-mode ")):
            for name, password in PASSWORDS.items():
                line = line.replace(f"CHANGE_ME_{name}_password", password)
            assert "CHANGE_ME" not in line, line
            lines.append(line)
    assert any(line.startswith("user default off") for line in lines)
    return lines


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    with SentinelTopology(tmp_path, sentinel_config=shipped_auth_lines(),
                          sentinel_auth={"username": "sentinel-admin",
                                         "password": PASSWORDS["sentinel_admin"]}) as topology:
        yield topology


def settings_for(topology: SentinelTopology, **sentinel: str) -> StreamflowSettings:
    hosts = ",".join(f"{h}:{p}" for h, p in topology.sentinel_addresses)
    settings = fast_settings(f"redis+sentinel://{hosts}/streamflow/0")
    settings.redis.retry_attempts = 20
    if "username" in sentinel:
        settings.redis.sentinel_username = sentinel["username"]
    if "password" in sentinel:
        settings.redis.sentinel_password = SecretStr(sentinel["password"])
    return settings


def test_nobody_unauthenticated_can_repoint_the_master(topology: SentinelTopology) -> None:
    for sentinel in topology.sentinels:
        with sentinel.client(socket_timeout=2, protocol=2,
                             retry=Retry(NoBackoff(), 0)) as anonymous:
            for command in FORBIDDEN:
                with pytest.raises(redis.AuthenticationError, match="Authentication required"):
                    anonymous.execute_command(*command)
    assert set(topology.master_addresses()) == {topology.master.address}


def test_the_client_user_may_only_read(topology: SentinelTopology) -> None:
    sentinel = topology.sentinels[0]
    with sentinel.client(socket_timeout=2, username="streamflow",
                         password=PASSWORDS["sentinel_client"], decode_responses=True) as client:
        assert client.sentinel_get_master_addr_by_name("streamflow") == (
            HOST, topology.master.port)
        for command in FORBIDDEN:
            with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions"):
                client.execute_command(*command)
    assert set(topology.master_addresses()) == {topology.master.address}


async def test_clients_without_sentinel_credentials_fail_in_one_line(
        topology: SentinelTopology, queue_name: str) -> None:
    settings = settings_for(topology)
    settings.redis.retry_attempts = 0
    with pytest.raises(redis.exceptions.ConnectionError):
        async with Queue(queue_name, settings=settings) as queue:
            await queue.add("pay", {"n": 1})


async def test_authenticated_clients_work_through_a_failover(topology: SentinelTopology,
                                                             queue_name: str) -> None:
    done: list[str] = []

    async def handler(job: Job) -> None:
        done.append(job.id)

    settings = settings_for(topology, username="streamflow",
                            password=PASSWORDS["sentinel_client"])
    async with Queue(queue_name, settings=settings) as queue:
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await queue.add("pay", {"n": 1}, job_id="before", durability="replicated")
            await wait_until(lambda: "before" in done, timeout=20)
            old = topology.kill_master()
            new = topology.wait_for_failover(timeout=60)
            assert new != old
            await queue.add("pay", {"n": 2}, job_id="after")
            await wait_until(lambda: "after" in done, timeout=60)


async def test_sentinel_credentials_may_come_in_the_url(topology: SentinelTopology,
                                                        queue_name: str) -> None:
    hosts = ",".join(f"{h}:{p}" for h, p in topology.sentinel_addresses)
    url = (f"redis+sentinel://{hosts}/streamflow/0?sentinel_username=streamflow"
           f"&sentinel_password={PASSWORDS['sentinel_client']}")
    async with Queue(queue_name, settings=StreamflowSettings.from_url(url)) as queue:
        assert await queue.add("pay", {"n": 1}, job_id="via-url") == "via-url"
