"""Shared fixtures: real Redis servers on free loopback ports, and a unique queue name per test.

Tests never FLUSHALL: each one works under its own queue name (`queue_name`), so tests can share
the session server and run in parallel, and a leaked key stays visible.

Markers are applied here: ``integration`` / ``chaos`` by directory, ``sentinel`` (+ ``slow``) and
``cluster`` by use of the `sentinel_topology` / `cluster_topology` fixtures, so
``-m "not sentinel"`` deselects the tests that would build those topologies.

``redis_server`` runs on testcontainers when a Docker engine answers (``STREAMFLOW_TEST_DOCKER=0``
forbids it, ``=1`` requires it); otherwise, as on the build machines, on a local redis-server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import hypothesis
import pytest
from typer.testing import CliRunner, Result

from tests.servers import (
    ClusterTopology,
    RedisProcess,
    RedisServer,
    SentinelTopology,
    TlsFiles,
    kill_all,
    make_tls_certs,
)


def _import_hypothesis_eagerly() -> None:
    """Import hypothesis's lazily loaded internals now, from a shallow stack.

    pytest rewrites hypothesis's modules (it is a plugin); when one is first imported deep inside
    a running test, CPython 3.11.7's parser can fail with "AST constructor recursion depth
    mismatch" (fixed in later 3.11 releases).
    """
    import importlib
    import pkgutil

    # optional integrations (numpy, django, ...) are skipped; importing a package to walk into
    # it can fail on more than ImportError (hypothesis.extra.django without Django settings)
    names = [module.name for module in pkgutil.walk_packages(
        hypothesis.__path__, "hypothesis.", onerror=lambda name: None)
        if ".extra" not in module.name]
    # top-level helpers hypothesis imports on first use (floats load the FTZ detector)
    names += ["_hypothesis_ftz_detector", "_hypothesis_globals"]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            continue


def _import_anyio_eagerly() -> None:
    """Import anyio's lazily loaded API now (``anyio.open_file``, used by Starlette's static
    files, loads ``anyio._core._fileio`` on first use, inside a test's portal thread), for the
    reason above: anyio is a pytest plugin, so its modules are rewritten too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases warn when touched
        for name in dir(anyio):
            try:
                getattr(anyio, name)
            except Exception:
                continue


_import_hypothesis_eagerly()
_import_anyio_eagerly()

TESTS_DIR = Path(__file__).parent
NOEVICTION = ["maxmemory-policy noeviction"]
REDIS_IMAGE = "redis:7.0"
_DOCKER_PROBE_TIMEOUT_S = 3.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path)
        if path.is_relative_to(TESTS_DIR / "integration"):
            item.add_marker(pytest.mark.integration)
        elif path.is_relative_to(TESTS_DIR / "chaos"):
            item.add_marker(pytest.mark.chaos)
        fixtures = getattr(item, "fixturenames", ())
        if "sentinel_topology" in fixtures:
            item.add_marker(pytest.mark.sentinel)
            item.add_marker(pytest.mark.slow)
        if "cluster_topology" in fixtures:
            item.add_marker(pytest.mark.cluster)


def pytest_unconfigure(config: pytest.Config) -> None:
    kill_all()  # a server whose fixture teardown never ran (e.g. interrupted session)


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not on PATH")


# ---------------------------------------------------------------------------- standalone


class ContainerRedis:
    """`RedisServer` view of a testcontainers Redis container."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{self._host}:{self._port}/0"


def _docker_engine_answers() -> bool:
    """True when ``docker info`` succeeds quickly (the CLI alone is not an engine)."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info"],
            capture_output=True,
            timeout=_DOCKER_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _use_docker() -> bool:
    choice = os.environ.get("STREAMFLOW_TEST_DOCKER", "auto").lower()
    if choice in {"0", "no", "false"}:
        return False
    answers = _docker_engine_answers()
    if choice in {"1", "yes", "true"} and not answers:
        pytest.fail("STREAMFLOW_TEST_DOCKER=1 but no Docker engine answers `docker info`")
    return answers


def _container_redis() -> Iterator[RedisServer]:
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer(REDIS_IMAGE).with_command(
        ["redis-server", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
    )
    with container:
        yield ContainerRedis(
            container.get_container_host_ip(), int(container.get_exposed_port(6379))
        )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the whole session, ``maxmemory-policy noeviction``, never flushed."""
    if _use_docker():
        yield from _container_redis()
        return
    _require("redis-server")
    with RedisProcess(tmp_path_factory.mktemp("redis"), config=NOEVICTION) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses: ``t-`` and 12 hex digits."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------- TLS, Sentinel, Cluster


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA, server and client certificates signed by it, and an unrelated ``wrong_ca``."""
    _require("openssl")
    return make_tls_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_redis_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[RedisProcess]:
    """A Redis listening only on TLS (``rediss://``); client certificates optional."""
    _require("redis-server")
    directory = tmp_path_factory.mktemp("redis-tls")
    with RedisProcess(directory, config=NOEVICTION, tls=tls_files) as server:
        yield server


@pytest.fixture
def sentinel_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """A fresh master + replica + 3 sentinels (service ``streamflow``, quorum 2) per test."""
    _require("redis-server")
    with SentinelTopology(tmp_path_factory.mktemp("sentinel")) as topology:
        yield topology


@pytest.fixture(scope="module")
def cluster_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    """A 3-master Redis Cluster shared by the tests of one module."""
    _require("redis-server")
    with ClusterTopology(tmp_path_factory.mktemp("cluster")) as topology:
        yield topology


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STREAMFLOW_*/REDIS_URL or .env from outside: every CLI command gets --redis-url."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMFLOW_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli(redis_url: str) -> Callable[..., Result]:
    """``streamflow --redis-url <the test Redis> ARGS...`` in-process (typer's CliRunner)."""
    from streamflow.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["--redis-url", redis_url, *args], input=input)

    return invoke


@pytest.fixture
def reader() -> Iterator[Any]:
    """An InMemoryMetricReader on a MeterProvider for streamflow's instruments during the test
    (the global provider is left alone)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from streamflow import metrics

    found = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[found])
    metrics.use_meter_provider(provider)
    yield found
    metrics.use_meter_provider(None)
    provider.shutdown()
