"""TLS (``rediss://``): a producer and a worker process jobs; a wrong CA fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from streamflow import Job, JobSpec, Queue, StreamflowSettings, Worker
from streamflow.connection import permanent
from tests.servers import RedisProcess, TlsFiles, make_tls_certs
from tests.support import fast_settings, running, wait_until
from tests.workers import ROOT

pytestmark = pytest.mark.anyio


def tls_settings(server: RedisProcess, tls: TlsFiles, *, client_cert: bool = True,
                 ca: str | None = None) -> StreamflowSettings:
    settings = fast_settings(server.url)
    assert settings.redis.url.startswith("rediss://")
    settings.redis.tls_ca_file = ca or str(tls.ca)
    if client_cert:
        settings.redis.tls_cert_file = str(tls.client_cert)
        settings.redis.tls_key_file = str(tls.client_key)
    return settings


@pytest.mark.parametrize("client_cert", [True, False], ids=["mutual-tls", "ca-only"])
async def test_producer_and_worker_over_tls(tls_redis_server: RedisProcess, tls_files: TlsFiles,
                                            queue_name: str, client_cert: bool) -> None:
    settings = tls_settings(tls_redis_server, tls_files, client_cert=client_cert)
    done: list[str] = []

    async def handler(job: Job) -> str:
        done.append(job.id)
        return "ok"

    async with Queue(queue_name, settings=settings) as q:
        ids = await q.add_bulk([JobSpec("tls", {"n": i}, job_id=f"tls-{i}") for i in range(50)])
        assert await q.add("tls", {"n": 0}, job_id="tls-0") is None  # dedup over TLS too
        await q.add("tls", {"n": 50}, job_id="tls-50", delay=0.1)
        async with running(Worker(queue_name, handler, settings=settings)):
            await wait_until(lambda: len(done) == 51)
        assert sorted(done) == sorted([*(i for i in ids if i), "tls-50"])
        assert (await q.counts())["pending"] == 0


async def test_a_wrong_ca_is_refused_by_the_library(tls_redis_server: RedisProcess,
                                                    tls_files: TlsFiles, queue_name: str) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    settings = tls_settings(tls_redis_server, tls_files, ca=str(tls_files.wrong_ca))
    with pytest.raises(RedisConnectionError, match="certificate verify failed") as caught:
        async with Queue(queue_name, settings=settings) as q:
            await q.add("tls", {})
    # Not retried with backoff: a certificate that does not verify will not verify later.
    assert permanent(caught.value)


def test_cli_with_a_wrong_ca_fails_in_one_line(tls_redis_server: RedisProcess,
                                               tls_files: TlsFiles, queue_name: str) -> None:
    env = {**os.environ, "STREAMFLOW_REDIS__TLS_CA_FILE": str(tls_files.wrong_ca)}
    env.pop("STREAMFLOW_REDIS_URL", None)
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "streamflow", "--redis-url", tls_redis_server.url, "stats",
         queue_name], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "certificate" in lines[0].lower()
    assert lines[0].startswith("streamflow: error:")
    assert result.stdout == ""


def test_cli_with_the_right_ca_reads_stats(tls_redis_server: RedisProcess, tls_files: TlsFiles,
                                           queue_name: str) -> None:
    env = {**os.environ, "STREAMFLOW_REDIS__TLS_CA_FILE": str(tls_files.ca)}
    for command in (["add", queue_name, "x", "--create"], ["stats", queue_name, "--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "streamflow", "--redis-url", tls_redis_server.url, *command],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
    assert '"pending": 0' in result.stdout


@pytest.fixture(scope="module")
def other_host_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisProcess,
                                                                                  TlsFiles]]:
    """A TLS server whose certificate (signed by a trusted CA) names another host."""
    directory = tmp_path_factory.mktemp("tls-other-host")
    files = make_tls_certs(directory / "certs", server_san="DNS:redis.example.internal")
    with RedisProcess(directory / "server", tls=files,
                      probe_auth={"ssl_check_hostname": False}) as server:
        yield server, files


async def test_a_certificate_for_another_host_is_refused(
        other_host_server: tuple[RedisProcess, TlsFiles], queue_name: str) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    server, files = other_host_server
    settings = tls_settings(server, files)
    with pytest.raises(RedisConnectionError, match=r"(?i)hostname|IP address mismatch") as caught:
        async with Queue(queue_name, settings=settings) as q:
            await q.add("tls", {})
    assert permanent(caught.value)


def test_the_client_states_verification_whatever_the_defaults() -> None:
    from streamflow.connection import _tls_options

    settings = StreamflowSettings.from_url("rediss://127.0.0.1:1/0").redis
    assert _tls_options(settings)["ssl_cert_reqs"] == "required"
    assert _tls_options(settings)["ssl_check_hostname"] is True
