"""The production templates as deploy/ ships them, rendered by ``deploy/secrets.sh`` with
generated secrets: Redis and a sentinel serve TLS only, users.acl and the sentinel's users hold
SHA-256 hashes, and a streamflow producer gets through with the sentinel and Redis credentials
over ``rediss+sentinel://``, checking the certificate and its host name."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamflow import Queue, StreamflowSettings
from streamflow.scripts import load_scripts
from tests.servers import HOST, RedisProcess, free_port
from tests.workers import ROOT

pytestmark = pytest.mark.anyio

SECRETS_SH = ROOT / "deploy" / "secrets.sh"


@dataclass
class Deployment:
    secrets: Path
    redis: RedisProcess
    sentinel: RedisProcess

    def password(self, name: str) -> str:
        return (self.secrets / f"{name}_password").read_text().strip()

    @property
    def ca(self) -> str:
        return str(self.secrets / "tls" / "ca.crt")


def secrets_sh(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SECRETS_SH), *map(str, args)], capture_output=True,
                          text=True, timeout=60, check=False)


def tls_lines(secrets: Path, port: int) -> list[str]:
    tls = secrets / "tls"
    return ["port 0", f"tls-port {port}", f"tls-cert-file {tls / 'redis.crt'}",
            f"tls-key-file {tls / 'redis.key'}", f"tls-ca-cert-file {tls / 'ca.crt'}"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("secure-deploy")
    secrets = root / "secrets"
    result = secrets_sh("generate", secrets)
    assert result.returncode == 0, result.stderr
    for template, name in ((ROOT / "deploy" / "redis" / "redis.conf", "redis.conf"),
                           (ROOT / "deploy" / "redis" / "users.acl", "users.acl"),
                           (ROOT / "sentinel.conf", "sentinel.conf")):
        result = secrets_sh("render", secrets, template, root / name)
        assert result.returncode == 0, result.stderr
    admin_auth = {"username": "admin",
                  "password": (secrets / "admin_password").read_text().strip(),
                  "ssl": True, "ssl_ca_certs": str(secrets / "tls" / "ca.crt")}
    redis_port, sentinel_port = free_port(), free_port()
    data = root / "data"
    data.mkdir()
    # `dir` is applied while the file is read and /data does not exist here: point it home.
    conf = root / "redis.conf"
    conf.write_text(re.sub(r"^dir .*$", f"dir {data}", conf.read_text(), flags=re.M))
    server = RedisProcess(data, port=redis_port, probe_auth=admin_auth, config=[
        f"include {root / 'redis.conf'}", f"dir {data}", f"aclfile {root / 'users.acl'}",
        f"bind {HOST}", f"logfile {data / 'redis.log'}", 'save ""', "appendonly no",
        "maxmemory 64mb", *tls_lines(secrets, redis_port)])
    sentinel_text = re.sub(r"^sentinel monitor streamflow \S+ \d+ \d+",
                           f"sentinel monitor streamflow {HOST} {redis_port} 1",
                           (root / "sentinel.conf").read_text(), flags=re.M)
    sentinel_lines = [line for line in sentinel_text.splitlines()
                      if line.strip() and not line.startswith(("#", "dir ", "logfile "))]
    sentinel_auth = {"username": "sentinel-admin",
                     "password": (secrets / "sentinel_admin_password").read_text().strip(),
                     "ssl": True, "ssl_ca_certs": str(secrets / "tls" / "ca.crt")}
    sentinel = RedisProcess(root / "sentinel", port=sentinel_port, sentinel=True,
                            probe_auth=sentinel_auth,
                            config=[*sentinel_lines, f"bind {HOST}",
                                    *tls_lines(secrets, sentinel_port)])
    with server, sentinel:
        yield Deployment(secrets, server, sentinel)


def test_the_rendered_files_hold_hashes_not_passwords(deployment: Deployment) -> None:
    root = deployment.secrets.parent
    acl = (root / "users.acl").read_text()
    sentinel = (root / "sentinel.conf").read_text()
    for name in ("admin", "worker", "producer", "monitor", "replica", "sentinel"):
        assert deployment.password(name) not in acl
    assert ">" not in acl and acl.count(" #") >= 6
    for name in ("sentinel_admin", "sentinel_client"):
        assert deployment.password(name) not in sentinel
    # What a sentinel sends must stay clear text: its peers' and Redis's passwords.
    assert f"sentinel-pass {deployment.password('sentinel_peer')}" in sentinel
    assert f"auth-pass streamflow {deployment.password('sentinel')}" in sentinel
    assert (root / "users.acl").stat().st_mode & 0o077 == 0


def test_rendering_without_a_secret_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "admin_password").write_text("x")
    result = secrets_sh("render", tmp_path, ROOT / "deploy" / "redis" / "users.acl",
                        tmp_path / "users.acl")
    assert result.returncode == 2
    assert "CHANGE_ME_worker_password" in result.stderr
    assert not (tmp_path / "users.acl").exists()


def test_plaintext_is_refused_on_both_ports(deployment: Deployment) -> None:
    for server in (deployment.redis, deployment.sentinel):
        with redis.Redis(host=HOST, port=server.port, socket_timeout=2,
                         retry=Retry(NoBackoff(), 0)) as plain, \
                pytest.raises(redis.ConnectionError):
            plain.ping()


async def test_a_producer_gets_through_sentinel_over_tls(deployment: Deployment) -> None:
    with deployment.redis.client(**deployment.redis.probe_auth) as admin:
        admin.ping()
    import redis.asyncio as aioredis

    async with aioredis.Redis(host=HOST, port=deployment.redis.port,
                              **deployment.redis.probe_auth) as admin_client:
        await load_scripts(admin_client)  # producers may not load scripts
    settings = StreamflowSettings.from_url(
        f"rediss+sentinel://{HOST}:{deployment.sentinel.port}/streamflow/0")
    settings.redis.tls_ca_file = deployment.ca
    settings.redis.username = "streamflow-producer"
    settings.redis.password = SecretStr(deployment.password("producer"))
    settings.redis.sentinel_username = "streamflow"
    settings.redis.sentinel_password = SecretStr(deployment.password("sentinel_client"))
    settings.redis.retry_attempts = 2
    async with Queue("payments", settings=settings) as queue:
        assert await queue.add("payment.captured", {"id": "pay_1"}, job_id="evt_tls1") == (
            "evt_tls1")
        assert await queue.add("payment.captured", {"id": "pay_1"}, job_id="evt_tls1") is None
