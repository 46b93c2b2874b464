"""Real Redis servers for the test suite: standalone, Sentinel, Cluster and TLS.

Every server is a local ``redis-server`` process listening on 127.0.0.1 on a free port, with its
config, log and data files in a directory the caller owns. Nothing here fakes Redis.

Nothing is left behind: a server stops on leaving its ``with`` block or fixture, every process
still alive when the interpreter exits is killed (`kill_all`), and on Linux a server started from
the main thread also receives SIGKILL when the test process dies (``PR_SET_PDEATHSIG``), so even
a ``kill -9`` of pytest does not leak servers.

Usage::

    with RedisProcess(tmp_path, appendonly=True) as server:
        client = server.client()
        client.xadd("s", {"k": "v"})
        server.restart(hard=True)  # SIGKILL, then start again on the same port and dir
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
SENTINEL_SERVICE = "streamflow"
REDIS_SERVER = "redis-server"
OPENSSL = "openssl"

Address = tuple[str, int]

_PROBE_TIMEOUT_S = 0.5
_POLL_INTERVAL_S = 0.02
_PR_SET_PDEATHSIG = 1
_CLUSTER_SLOTS = 16384

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


class ServerStartError(RuntimeError):
    """Raised when a server does not come up (or a topology does not form) before its deadline."""


class RedisServer(Protocol):
    """What a test needs of any Redis server, local process or container."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports (each socket stays bound until all are picked),
    never one this process handed out before: a server is often made (and its port picked)
    before an earlier-made one has started listening on its own, which the kernel would
    otherwise hand out again (seen: a sentinel given its master's port)."""
    with contextlib.ExitStack() as stack, _handed_out_lock:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
            if port not in _handed_out:  # else: keep it bound, so the next bind gets another
                _handed_out.add(port)
                ports.append(port)
        return ports


def kill_all() -> int:
    """SIGKILL every server process this module started that is still alive; return how many."""
    with _live_lock:
        processes = list(_live)
        _live.clear()
    killed = 0
    for process in processes:
        if process.poll() is None:
            process.kill()
            killed += 1
        process.wait()
    return killed


atexit.register(kill_all)


def _death_signal_hook() -> Callable[[], None] | None:
    # The death signal fires when the *thread* that forked exits, so it is only safe to ask for
    # it from the main thread; a server started from a worker thread relies on kill_all instead.
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


def _probe_client(host: str, port: int, **kwargs: Any) -> redis.Redis:
    """A client that fails fast: one short attempt, no built-in retries."""
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=_PROBE_TIMEOUT_S,
        socket_connect_timeout=_PROBE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **kwargs,
    )


def _wait_until(
    condition: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str]
) -> None:
    """Poll ``condition`` (Redis connection errors count as "not yet") until true or timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            cause = f" (last error: {last_error!r})" if last_error else ""
            raise ServerStartError(f"{what} not reached within {timeout:g} s{cause}\n{detail()}")
        time.sleep(_POLL_INTERVAL_S * 5)


# --------------------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """Certificates and keys for TLS tests, all PEM files in one directory.

    ``ca`` signed ``cert`` (server: SAN 127.0.0.1 and localhost) and ``client_cert``;
    ``wrong_ca`` is an unrelated CA, so verifying the server against it must fail.
    """

    directory: Path
    ca: Path
    ca_key: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = streamflow-test

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {server_san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")


def make_tls_certs(directory: Path, *, days: int = 7,
                   server_san: str = "IP:127.0.0.1, DNS:localhost") -> TlsFiles:
    """Create a test CA, a server and a client certificate signed by it, and a second CA.

    Keys are P-256 EC (fast to generate); extensions satisfy strict X.509 verification
    (``VERIFY_X509_STRICT``, Python >= 3.13's default).
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG.replace("{server_san}", server_san))

    def key(name: str) -> Path:
        path = directory / f"{name}.key"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        return path

    def authority(name: str, common_name: str) -> tuple[Path, Path]:
        ca_key, ca_cert = key(name), directory / f"{name}.crt"
        _openssl(
            "req", "-x509", "-new", "-key", ca_key, "-out", ca_cert, "-days", str(days),
            "-config", config, "-extensions", "ca_ext", "-subj", f"/CN={common_name}",
        )  # fmt: skip
        return ca_cert, ca_key

    def leaf(name: str, common_name: str, extensions: str, ca: tuple[Path, Path]) -> Path:
        leaf_key, csr, cert = key(name), directory / f"{name}.csr", directory / f"{name}.crt"
        _openssl(
            "req", "-new", "-key", leaf_key, "-out", csr, "-config", config,
            "-subj", f"/CN={common_name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
            "-set_serial", str(secrets.randbits(63)), "-days", str(days), "-out", cert,
            "-extfile", config, "-extensions", extensions,
        )  # fmt: skip
        csr.unlink()
        return cert

    ca = authority("ca", "streamflow test CA")
    wrong_ca, _ = authority("wrong-ca", "streamflow unrelated CA")
    return TlsFiles(
        directory=directory,
        ca=ca[0],
        ca_key=ca[1],
        cert=leaf("server", "localhost", "server_ext", ca),
        key=directory / "server.key",
        client_cert=leaf("client", "streamflow-test-client", "client_ext", ca),
        client_key=directory / "client.key",
        wrong_ca=wrong_ca,
    )


# ------------------------------------------------------------------------------ one process


class RedisProcess:
    """One ``redis-server`` process (or a sentinel) on 127.0.0.1, files kept in ``directory``.

    The config is generated: ``bind``, ``port``, ``save ""``, ``appendonly``, ``dir``,
    ``logfile``, then ``config`` lines verbatim (a later line overrides an earlier one). With
    ``tls`` the server listens only on a TLS port (plain ``port 0``); ``tls-auth-clients`` is
    ``optional`` so a client that only checks the server (``ssl_ca_certs``) connects.

    ``start()`` returns once the server answers PING, or raises `ServerStartError` with the tail
    of its log. When ``port`` is not given a free one is picked, and picked again if another
    process grabbed it first. ``restart()`` keeps port, directory and data files.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        config: Iterable[str] = (),
        tls: TlsFiles | None = None,
        sentinel: bool = False,
        startup_timeout: float = 10.0,
        probe_auth: dict[str, Any] | None = None,
    ) -> None:
        self.directory = directory
        self.probe_auth = dict(probe_auth or {})
        """Extra client options of the readiness probe: ``username``/``password`` for ACL
        servers, ``ssl_check_hostname=False`` for a certificate naming another host."""
        self.appendonly = appendonly
        self.extra_config = list(config)
        self.tls = tls
        self.sentinel = sentinel
        self.startup_timeout = startup_timeout
        self._port_given = port is not None
        self._port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._config_written = False

    def __repr__(self) -> str:
        kind = "sentinel" if self.sentinel else "redis"
        state = "running" if self.running else "stopped"
        return f"<RedisProcess {kind} {self.host}:{self.port} {state}>"

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """The port clients use (the TLS port when ``tls`` is set)."""
        return self._port

    @property
    def address(self) -> Address:
        return (HOST, self._port)

    @property
    def url(self) -> str:
        """``redis://`` URL, or ``rediss://`` with TLS (pass ``ssl_ca_certs`` to the client)."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{HOST}:{self._port}" + ("" if self.sentinel else "/0")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def config_path(self) -> Path:
        return self.directory / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log_path(self) -> Path:
        return self.directory / ("sentinel.log" if self.sentinel else "redis.log")

    @property
    def output_path(self) -> Path:
        """stdout/stderr of the process: errors from before the log file opens land here."""
        return self.directory / "output.log"

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for a redis-py client (host, port and TLS files)."""
        kwargs: dict[str, Any] = {"host": HOST, "port": self._port}
        if self.tls:
            kwargs.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
            )
        return kwargs

    def client(self, **kwargs: Any) -> redis.Redis:
        """A sync redis-py client for this server; close it (or use ``with``) when done."""
        return redis.Redis(**{**self.client_kwargs(), **kwargs})

    def config_text(self) -> str:
        lines = [f"bind {HOST}", "protected-mode no", "daemonize no", f"dir {self.directory}"]
        lines.append(f"logfile {self.log_path}")
        if not self.sentinel:
            lines += ['save ""', f"appendonly {'yes' if self.appendonly else 'no'}"]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self._port}",
                f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}",
                f"tls-ca-cert-file {self.tls.ca}",
                "tls-auth-clients optional",
            ]
        else:
            lines.append(f"port {self._port}")
        return "\n".join([*lines, *self.extra_config, ""])

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the server log and of its stdout/stderr, for error messages."""
        parts = []
        for path in (self.output_path, self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    def start(self) -> Self:
        """Start the server and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            # Written once so that a restart keeps what Sentinel rewrote into its own config.
            if not self._config_written:
                self.config_path.write_text(self.config_text())
                self._config_written = True
            self._spawn()
            try:
                self._wait_ready()
                self._port_given = True  # a restart must come back on this port
                return self
            except ServerStartError:
                if self._port_given or attempt == 2 or "in use" not in self.log_tail():
                    raise
                self._port = free_port()
                self._config_written = False
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        command = [REDIS_SERVER, str(self.config_path)]
        if self.sentinel:
            command.append("--sentinel")
        with self.output_path.open("ab") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                preexec_fn=_death_signal_hook(),
            )
        with _live_lock:
            _live.add(process)
        self._process = process

    def _wait_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.startup_timeout
        kwargs = {**self.client_kwargs(), **self.probe_auth}
        del kwargs["host"], kwargs["port"]
        while True:
            code = process.poll()
            if code is not None:
                self.kill()  # reaps it and forgets it
                raise ServerStartError(
                    f"{self!r} exited with code {code} while starting\n{self.log_tail()}"
                )
            try:
                with _probe_client(HOST, self._port, **kwargs) as client:
                    if client.ping():
                        return
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # not listening yet, or still loading its data (BusyLoadingError)
            if time.monotonic() >= deadline:
                self.kill()
                raise ServerStartError(
                    f"redis-server on port {self._port} did not answer PING within "
                    f"{self.startup_timeout:g} s\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF and exits) and wait; SIGKILL if it takes longer."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL and wait: a crash, with no shutdown work done."""
        self._end(signal.SIGKILL, None)

    def _end(self, signum: int, timeout: float | None) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        with _live_lock:
            _live.discard(process)
        self._process = None

    def restart(self, *, hard: bool = False) -> Self:
        """Stop (SIGKILL if ``hard``, else SIGTERM) and start again on the same port and dir."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Topology:
    """Shared lifetime handling: start everything or tear down what already started."""

    def _processes(self) -> list[RedisProcess]:
        raise NotImplementedError

    def _start(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every process of the topology (their data is throwaway)."""
        for process in self._processes():
            process.kill()

    def log_tails(self, lines: int = 10) -> str:
        return "\n".join(process.log_tail(lines) for process in self._processes())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------- Sentinel


class SentinelTopology(_Topology):
    """A master, one replica and three sentinels monitoring them as ``service_name``.

    ``start()`` returns once the replica is in sync and every sentinel knows the replica and
    the two other sentinels, i.e. once a failover can actually happen. Everything announces
    127.0.0.1.

    Usage::

        with SentinelTopology(tmp_path) as topology:
            old = topology.kill_master()
            new_master = topology.wait_for_failover(timeout=30)
    """

    def __init__(
        self,
        directory: Path,
        *,
        service_name: str = SENTINEL_SERVICE,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        sentinels: int = 3,
        startup_timeout: float = 20.0,
        sentinel_config: Iterable[str] = (),
        sentinel_auth: dict[str, str] | None = None,
    ) -> None:
        """``sentinel_config`` lines go into every sentinel's config (e.g. ACL users and
        ``sentinel sentinel-user``/``sentinel-pass``); ``sentinel_auth`` (``username``,
        ``password``) is what this object's own probes of the sentinels authenticate with."""
        self.directory = directory
        self.sentinel_config = list(sentinel_config)
        self.sentinel_auth = dict(sentinel_auth or {})
        self.service_name = service_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.startup_timeout = startup_timeout
        # Redis 7 delays a diskless full sync by 5 s by default, waiting for more replicas.
        fast_sync = ["repl-diskless-sync-delay 0"]
        self.master = RedisProcess(directory / "master", config=fast_sync)
        self.replica = RedisProcess(directory / "replica", config=fast_sync)
        self.sentinels = [
            RedisProcess(directory / f"sentinel-{index}", sentinel=True,
                         probe_auth=self.sentinel_auth)
            for index in range(sentinels)
        ]
        self._killed: Address | None = None

    def _processes(self) -> list[RedisProcess]:
        return [*self.sentinels, self.replica, self.master]

    @property
    def servers(self) -> list[RedisProcess]:
        """The data nodes (master first, as started; roles change on failover)."""
        return [self.master, self.replica]

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [sentinel.address for sentinel in self.sentinels]

    def _sentinel_config(self, index: int, ids: list[str]) -> list[str]:
        name, sentinel = self.service_name, self.sentinels[index]
        # Sentinels would find each other and the replica within ~2 s (hello messages, INFO);
        # fixed ids and known-* lines make them start out knowing the whole topology.
        peers = [
            f"sentinel known-sentinel {name} {HOST} {other.port} {ids[other_index]}"
            for other_index, other in enumerate(self.sentinels)
            if other_index != index
        ]
        return [
            f"sentinel myid {ids[index]}",
            f"sentinel announce-ip {HOST}",
            f"sentinel announce-port {sentinel.port}",
            f"sentinel monitor {name} {HOST} {self.master.port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            f"sentinel known-replica {name} {HOST} {self.replica.port}",
            *peers,
            *self.sentinel_config,
        ]

    def _start(self) -> None:
        self.master.start()  # first: its port is final only once it listens
        self.replica.extra_config += [
            f"replicaof {HOST} {self.master.port}",
            "replica-serve-stale-data yes",
            f"replica-announce-ip {HOST}",
        ]
        self.replica.start()
        _wait_until(self._replica_in_sync, self.startup_timeout, "replica in sync", self.log_tails)
        ids = [secrets.token_hex(20) for _ in self.sentinels]
        for index, sentinel in enumerate(self.sentinels):
            sentinel.extra_config = self._sentinel_config(index, ids)
            sentinel.start()
        _wait_until(self._sentinels_ready, self.startup_timeout, "sentinels ready", self.log_tails)

    def _replica_in_sync(self) -> bool:
        with _probe_client(*self.replica.address) as client:
            info = client.info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            with _probe_client(*sentinel.address, **self.sentinel_auth) as client:
                state = client.sentinel_master(self.service_name)
                replicas = client.sentinel_slaves(self.service_name)
            if state["num-other-sentinels"] < others or state["num-slaves"] < 1:
                return False
            # A sentinel only promotes a replica it has had an INFO reply from.
            if not any(r["flags"] == "slave" and r["master-link-status"] == "ok" for r in replicas):
                return False
        return True

    def master_addresses(self) -> list[Address | None]:
        """What each sentinel answers to ``SENTINEL get-master-addr-by-name`` (None: no answer)."""
        answers: list[Address | None] = []
        for sentinel in self.sentinels:
            try:
                with _probe_client(*sentinel.address, **self.sentinel_auth) as client:
                    reply = client.sentinel_get_master_addr_by_name(self.service_name)
            except (redis.ConnectionError, redis.TimeoutError):
                reply = None
            answers.append((str(reply[0]), int(reply[1])) if reply else None)
        return answers

    def master_address(self) -> Address:
        """The master's address as the first answering sentinel reports it."""
        for address in self.master_addresses():
            if address is not None:
                return address
        raise ServerStartError(f"no sentinel knows {self.service_name!r}\n{self.log_tails()}")

    def process_at(self, address: Address) -> RedisProcess:
        """The data node listening on ``address``."""
        for server in self.servers:
            if server.address == address:
                return server
        raise LookupError(f"no server of this topology at {address}")

    def kill_master(self) -> Address:
        """SIGKILL the current master (as Sentinel sees it) and return its address."""
        address = self.master_address()
        self.process_at(address).kill()
        self._killed = address
        return address

    def wait_for_failover(self, timeout: float = 30.0, *, old: Address | None = None) -> Address:
        """Wait until every sentinel names a new master that reports ``role:master``.

        ``old`` defaults to the address `kill_master` killed. Returns the new master's address.
        """
        old = old or self._killed
        if old is None:
            raise RuntimeError("wait_for_failover needs old= or a kill_master() call first")
        new: list[Address] = []

        def switched() -> bool:
            answers = set(self.master_addresses())
            if len(answers) != 1 or None in answers or old in answers:
                return False
            address = answers.pop()
            assert address is not None
            with _probe_client(*address) as client:
                if client.info("replication").get("role") != "master":
                    return False
            new[:] = [address]
            return True

        _wait_until(switched, timeout, f"failover away from {old}", self.log_tails)
        return new[0]


# ---------------------------------------------------------------------------------- Cluster


class ClusterTopology(_Topology):
    """A Redis Cluster of ``masters`` nodes (and ``replicas`` per master), the 16384 slots
    split evenly over the masters.

    ``start()`` returns once every node reports ``cluster_state:ok`` and knows all the others.
    Connect with ``redis.cluster.RedisCluster(host=HOST, port=topology.nodes[0].port)`` or
    ``startup_nodes`` (as ``ClusterNode(host, port)``, sync or asyncio flavour).
    """

    def __init__(
        self,
        directory: Path,
        *,
        masters: int = 3,
        node_timeout_ms: int = 2000,
        startup_timeout: float = 30.0,
        replicas: int = 0,
    ) -> None:
        """``replicas`` per master: ``replicas[i]`` (in `replica_nodes`) replicates
        ``nodes[i % masters]``; with them a killed master fails over (`kill_master`)."""
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.directory = directory
        self.startup_timeout = startup_timeout
        # The cluster bus port defaults to port + 10000, which may be taken or out of range.
        total = masters * (1 + replicas)
        ports = free_ports(2 * total)
        self.bus_ports = ports[1::2]

        def node(index: int, name: str) -> RedisProcess:
            return RedisProcess(
                directory / name,
                port=ports[2 * index],
                config=[
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {node_timeout_ms}",
                    f"cluster-port {self.bus_ports[index]}",
                    f"cluster-announce-ip {HOST}",
                    "repl-diskless-sync-delay 0",
                    "maxmemory-policy noeviction",
                ],
            )

        self.nodes = [node(index, f"node-{index}") for index in range(masters)]
        self.replica_nodes = [node(masters + index, f"replica-{index}")
                              for index in range(masters * replicas)]
        self._killed_ports: set[int] = set()

    def _processes(self) -> list[RedisProcess]:
        return [*self.replica_nodes, *self.nodes]

    @property
    def all_nodes(self) -> list[RedisProcess]:
        """Masters as started, then replicas (roles change on failover)."""
        return [*self.nodes, *self.replica_nodes]

    @property
    def startup_nodes(self) -> list[Address]:
        return [node.address for node in self.nodes]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        # What `redis-cli --cluster create` does, minus its one-second polling sleeps.
        bounds = [_CLUSTER_SLOTS * i // len(self.nodes) for i in range(len(self.nodes) + 1)]
        for index, node in enumerate(self.nodes):
            with _probe_client(*node.address) as client:
                client.execute_command(
                    "CLUSTER ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1
                )
                # Distinct epochs up front spare the nodes an epoch-collision round.
                client.execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
        # Every node meets every other: learning the last one through gossip can take seconds.
        for node in self.nodes:
            with _probe_client(*node.address) as client:
                for other, bus_port in zip(self.nodes, self.bus_ports, strict=False):
                    if other is not node:
                        client.execute_command("CLUSTER MEET", HOST, other.port, bus_port)
        _wait_until(self._all_ok, self.startup_timeout, "cluster_state:ok", self.log_tails)
        if self.replica_nodes:
            self._start_replicas()

    def _start_replicas(self) -> None:
        masters = len(self.nodes)
        for replica in self.replica_nodes:
            replica.start()
            with _probe_client(*replica.address) as client:
                for other, bus_port in zip(self.nodes, self.bus_ports, strict=False):
                    client.execute_command("CLUSTER MEET", HOST, other.port, bus_port)
        ids = [self.node_id(node) for node in self.nodes]

        def knows_masters(replica: RedisProcess) -> bool:
            with _probe_client(*replica.address) as client:
                known = str(client.execute_command("CLUSTER NODES"))
            return all(node_id in known for node_id in ids)

        for index, replica in enumerate(self.replica_nodes):
            _wait_until(functools.partial(knows_masters, replica), self.startup_timeout,
                        "replica knows the masters", self.log_tails)
            with _probe_client(*replica.address) as client:
                client.execute_command("CLUSTER REPLICATE", ids[index % masters])
        _wait_until(self._all_ok, self.startup_timeout, "replicas in the cluster",
                    self.log_tails)
        _wait_until(self._replicas_in_sync, self.startup_timeout, "replicas in sync",
                    self.log_tails)

    def _all_ok(self) -> bool:
        for node in self.all_nodes:
            if not node.running:
                continue
            with _probe_client(*node.address) as client:
                info: dict[str, Any] = client.cluster("INFO")
            if (
                info.get("cluster_state") != "ok"
                or int(info.get("cluster_known_nodes", 0)) < len(self.nodes)
                or int(info.get("cluster_slots_ok", 0)) != _CLUSTER_SLOTS
            ):
                return False
        return True

    def _replicas_in_sync(self) -> bool:
        for replica in self.replica_nodes:
            with _probe_client(*replica.address) as client:
                info = client.info("replication")
            if info.get("role") != "slave" or info.get("master_link_status") != "up":
                return False
        return True

    def node_id(self, node: RedisProcess) -> str:
        """The cluster node id of ``node`` (CLUSTER MYID)."""
        with _probe_client(*node.address) as client:
            return str(client.execute_command("CLUSTER MYID"))

    def masters_now(self) -> list[RedisProcess]:
        """The running nodes that report ``role:master`` and own at least one slot."""
        out = []
        for node in self.all_nodes:
            if not node.running:
                continue
            with _probe_client(*node.address) as client:
                if client.info("replication").get("role") != "master":
                    continue
                own = str(client.execute_command("CLUSTER NODES"))
            mine = next(line for line in own.splitlines() if "myself" in line)
            if len(mine.split()) > 8:
                out.append(node)
        return out

    def owner_of(self, slot: int) -> RedisProcess:
        """The running master that serves ``slot`` now."""
        for node in self.masters_now():
            with _probe_client(*node.address) as client:
                ranges = client.execute_command("CLUSTER SLOTS")
            for start, end, master, *_ in ranges:
                if int(start) <= slot <= int(end) and int(master[1]) == node.port:
                    return node
        raise LookupError(f"no running master serves slot {slot}")

    def kill_master(self, node: RedisProcess) -> None:
        """SIGKILL master ``node``; a replica of it takes over (`wait_for_failover`)."""
        self._killed_ports.add(node.port)
        node.kill()

    def wait_for_failover(self, timeout: float = 30.0) -> None:
        """Wait until no live node maps a slot to a killed master any more and every live node
        says ``cluster_state:ok``."""

        def switched() -> bool:
            for node in self.all_nodes:
                if not node.running:
                    continue
                with _probe_client(*node.address) as client:
                    ranges = client.execute_command("CLUSTER SLOTS")
                if any(int(master[1]) in self._killed_ports for _, _, master, *_ in ranges):
                    return False
            return self._all_ok()

        _wait_until(switched, timeout, "cluster failover", self.log_tails)

    def migrate_slot(self, slot: int, target: RedisProcess, *, batch: int = 100,
                     between: Callable[[], None] | None = None) -> int:
        """Move ``slot`` to master ``target`` as ``redis-cli --cluster reshard`` does, while
        clients keep working (they get ASK during the move, MOVED after it).

        IMPORTING on the target, MIGRATING on the source, MIGRATE the keys ``batch`` at a time
        (``between`` runs after each batch, e.g. to let workers act mid-move), then SETSLOT
        NODE on both and the other masters. Returns how many keys moved.
        """
        source = self.owner_of(slot)
        if source is target:
            return 0
        source_id, target_id = self.node_id(source), self.node_id(target)
        moved = 0
        with _probe_client(*source.address) as src, _probe_client(*target.address) as dst:
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            while True:
                keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                src.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                if between is not None:
                    between()
            for client in (dst, src):
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        for node in self.masters_now():
            if node not in (source, target):
                with _probe_client(*node.address) as client:
                    client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved


def running_pids() -> list[int]:
    """PIDs of the server processes this module started that are still alive (leak checks)."""
    with _live_lock:
        processes = list(_live)
    return [process.pid for process in processes if process.poll() is None]
