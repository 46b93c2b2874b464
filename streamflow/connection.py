"""The one place a Redis client is built: URL, TLS, ACL, Sentinel, Cluster, retry policy.

URL forms: ``redis://[user:pass@]host:port/db``, ``rediss://`` (TLS), ``unix:///path``, and
``redis+sentinel://[user:pass@]host1:26379,host2:26379/<master name>/<db>`` (``rediss+sentinel``
for TLS to sentinels and master). The user and password of a Sentinel URL authenticate to the
master; the sentinels' own credentials come from ``sentinel_username``/``sentinel_password``
or the URL's ``?sentinel_username=...&sentinel_password=...``.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    MasterDownError,
    NoPermissionError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from .direct_write import DirectWrite
from .errors import ConfigurationError
from .settings import RedisSettings

log = logging.getLogger("streamflow")

RETRYABLE_ERRORS: tuple[type[RedisError], ...] = (ConnectionError, TimeoutError, ReadOnlyError)
SAFE_POLICIES = frozenset({"noeviction"})

# Replies of a node that is no longer (or not yet) a writable master: a demoted master answers
# READONLY, unblocks a blocked XREADGROUP with UNBLOCKED ("instance state changed (master ->
# replica?)"), a replica cut off from its master answers MASTERDOWN, a master that lost its
# replicas under `min-replicas-to-write` answers NOREPLICAS. All pass once clients reach the
# (new) master, so they are connection errors: retried with backoff, caught by worker loops.
ROLE_CHANGE_REPLIES = ("READONLY", "UNBLOCKED", "MASTERDOWN", "NOREPLICAS")

T = TypeVar("T")

# A URL anywhere in a text: scheme (any case) then everything up to white space or a quote.
_URL = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<rest>[^\s'\"<>]*)")
_SECRET_PARAM = re.compile(
    r"(?i)(?P<key>(?:^|[?&;])[a-z_]*(?:password|passwd|pwd|secret|token)[a-z_]*=)[^&;#\s]*")


def _mask_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    # The user info ends at the LAST '@' of the authority: a password may hold '@' (and a
    # careless one '/' or '?'), so an '@' after the first '/', '?' or '#' still counts when
    # none comes before; masking a little too much is fine, showing a secret is not.
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    at = rest.rfind("@", 0, authority_end)
    if at == -1:
        at = rest.find("@")
    if at != -1:
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:***" if colon else rest[:at]) + rest[at:]
    rest = _SECRET_PARAM.sub(lambda m: f"{m['key']}***", rest)
    return match["scheme"] + rest


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``, fit for logs.

    Any scheme, any case (``REDIS://``, ``rediss+sentinel://``, ``postgresql://``); a
    password holding ``@``; ``password=``/``token=``/``secret=`` query parameters. Use it on
    every URL shown or logged and on error texts stored in dead letters and events.
    """
    if "://" not in text:
        return text
    return _URL.sub(_mask_url, text)


class MasterMovedError(ConnectionError):
    """The server answered as a node that is not a writable master (failover under way)."""


def role_changed(error: BaseException) -> bool:
    """Whether ``error`` is a reply of a node that stopped (or has not yet started) being the
    writable master."""
    if isinstance(error, ReadOnlyError | MasterDownError):  # redis-py strips their codes
        return True
    return isinstance(error, ResponseError) and str(error).startswith(ROLE_CHANGE_REPLIES)


def permanent(error: BaseException) -> bool:
    """Connection errors no retry can cure: refused credentials, a certificate that does not
    verify (or any other TLS handshake failure)."""
    if isinstance(error, AuthenticationError):
        return True
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    text = str(error)
    return "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text


def script_permission_error(error: BaseException) -> NoPermissionError | None:
    """A NoPermissionError naming the command for Redis's ACL refusal inside one of our
    scripts or functions, which names neither; None for any other error."""
    if (not isinstance(error, ResponseError) or isinstance(error, NoPermissionError)
            or not str(error).startswith("The user executing the script can't run")):
        return None
    from . import scripts  # here: scripts is not needed to build a client

    return scripts.permission_error(str(error))


class _MasterOnly:
    """Turns the replies of a demoted master into a connection error after dropping the
    connection, so that the next attempt reconnects (through Sentinel: to the new master).
    An ACL refusal inside a script becomes a NoPermissionError that names the command."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ResponseError as exc:
            denied = script_permission_error(exc)
            if denied is not None:
                raise denied from exc
            if not role_changed(exc):
                raise
            await self.disconnect()  # type: ignore[attr-defined]
            raise MasterMovedError(f"not the writable master any more, reconnecting: {exc}"
                                   ) from exc


class _HiredisPacking(DirectWrite):
    """Packs commands with hiredis's C encoder: redis-py's asyncio client packs in Python,
    which was the largest cost of acking and bulk adds (profiled: ~45 % of worker CPU); writes
    them without a task per write (``DirectWrite``)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str) and " " in head:
            args = (*head.split(), *args[1:])
        return [hiredis.pack_command(args)]


class FastConnection(_HiredisPacking, _MasterOnly, Connection):
    """TCP connection with C command packing."""


class FastSSLConnection(_HiredisPacking, _MasterOnly, SSLConnection):
    """TLS connection with C command packing."""


class FastUnixConnection(_HiredisPacking, _MasterOnly, UnixDomainSocketConnection):
    """Unix socket connection with C command packing."""


class _FollowsMaster:
    """Asks the sentinels for the master whenever a dropped connection reconnects.

    redis-py 8 reconnects a dropped connection inside ``send_packed_command`` through
    ``connect_check_health``, to the address it had, bypassing the Sentinel lookup of
    ``connect()``: after a failover, every retry went to the dead master."""

    _address_fresh = False

    async def connect_to(self, address: tuple[str, int]) -> None:
        self._address_fresh = True
        try:
            await super().connect_to(address)  # type: ignore[misc]
        finally:
            self._address_fresh = False

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        pool = self.connection_pool  # type: ignore[attr-defined]
        if not self._address_fresh and not self.is_connected and pool.is_master:  # type: ignore[attr-defined]
            self.host, self.port = await pool.get_master_address()
        await super().connect_check_health(*args, **kwargs)  # type: ignore[misc]


class FastSentinelConnection(_HiredisPacking, _MasterOnly, _FollowsMaster,
                             SentinelManagedConnection):
    """Sentinel-managed connection with C command packing."""


class FastSentinelSSLConnection(_HiredisPacking, _MasterOnly, _FollowsMaster,
                                SentinelManagedSSLConnection):
    """Sentinel-managed TLS connection with C command packing."""


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection, as plain URLs' pools do,
    instead of raising ``MaxConnectionsError`` when every connection is in use."""


_CONNECTION_CLASSES: dict[str, type[Any]] = {
    "redis": FastConnection, "rediss": FastSSLConnection, "unix": FastUnixConnection,
}


class FastCluster(RedisCluster):
    """redis-py's Cluster client, routing FCALL by its declared keys as it does EVALSHA
    (redis-py asks the server, COMMAND GETKEYS, for every FCALL: one more round trip)."""

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command.upper() == "FCALL" and len(args) >= 2 and int(args[1]) > 0:
            return await super()._determine_slot("EVALSHA", *args)
        return await super()._determine_slot(command, *args)


class FailoverRetry(Retry):
    """redis-py's ``Retry`` that gives up at once on errors no retry can cure (refused
    credentials, TLS verification): those fail in milliseconds instead of after the backoff."""

    async def call_with_retry(self, do: Callable[[], Awaitable[T]],
                              fail: Callable[..., Any],
                              is_retryable: Callable[[Exception], bool] | None = None,
                              with_failure_count: bool = False) -> T:
        def retryable(error: Exception) -> bool:
            if permanent(error):
                return False
            return is_retryable(error) if is_retryable is not None else True

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


def retry_policy(settings: RedisSettings) -> Retry:
    """Capped exponential backoff with jitter for connection errors and failovers."""
    return FailoverRetry(
        ExponentialWithJitterBackoff(cap=settings.retry_backoff_cap,
                                     base=settings.retry_backoff_base),
        settings.retry_attempts,
        supported_errors=RETRYABLE_ERRORS,
    )


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    # Stated, not inherited: the server's certificate must verify and name the host we dialled,
    # whatever a given redis-py version's defaults are.
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if settings.tls_ca_file:
        options["ssl_ca_certs"] = settings.tls_ca_file
    if settings.tls_cert_file:
        options["ssl_certfile"] = settings.tls_cert_file
    if settings.tls_key_file:
        options["ssl_keyfile"] = settings.tls_key_file
    return options


def create_client(settings: RedisSettings, *, max_connections: int = 64,
                  client_name: str | None = None) -> Any:
    """An asyncio Redis client (``Redis`` or ``RedisCluster``) built from ``settings``.

    Pools block (up to the connect timeout) instead of failing when all connections are busy.
    """
    client = _create_client(settings, max_connections, client_name)
    if settings.lua != "auto":
        from . import scripts

        scripts.use(client, settings.lua)
    return client


def _create_client(settings: RedisSettings, max_connections: int,
                   client_name: str | None) -> Any:
    url = settings.url
    common: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": retry_policy(settings),
        "health_check_interval": settings.health_check_interval,
        "client_name": client_name,
    }
    if settings.username:
        common["username"] = settings.username
    if settings.password is not None:
        common["password"] = settings.password.get_secret_value()

    scheme = urlsplit(url).scheme
    if scheme in ("redis+sentinel", "rediss+sentinel") or settings.sentinels:
        return _sentinel_client(settings, common, max_connections)
    if settings.cluster:
        common.pop("health_check_interval")
        common.pop("client_name")
        tls = {"ssl": True, **_tls_options(settings)} if scheme == "rediss" else {}
        return FastCluster.from_url(url, max_connections=max_connections, **common, **tls)
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"unsupported Redis URL scheme {scheme!r} in {redact(url)}")
    extra = _tls_options(settings) if scheme == "rediss" else {}
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=settings.connect_timeout + 15,
        connection_class=_CONNECTION_CLASSES[scheme], **common, **extra,
    )
    return Redis(connection_pool=pool)


def _sentinel_client(settings: RedisSettings, common: dict[str, Any],
                     max_connections: int) -> Redis:
    parts = urlsplit(settings.url)
    master_name = settings.master_name
    db = 0
    addresses = list(settings.sentinels)
    if parts.scheme.endswith("+sentinel"):
        hosts = parts.netloc.rpartition("@")[2]
        addresses = addresses or [h for h in hosts.split(",") if h]
        path = [p for p in parts.path.split("/") if p]
        if path:
            master_name = path[0]
        if len(path) > 1:
            db = int(path[1])
        if parts.username and "username" not in common:
            common["username"] = unquote(parts.username)
        if parts.password and "password" not in common:
            common["password"] = unquote(parts.password)
        query = parse_qs(parts.query)
        sentinel_username = settings.sentinel_username or _first(query, "sentinel_username")
        sentinel_password = (settings.sentinel_password.get_secret_value()
                             if settings.sentinel_password is not None
                             else _first(query, "sentinel_password"))
    else:
        sentinel_username = settings.sentinel_username
        sentinel_password = (settings.sentinel_password.get_secret_value()
                             if settings.sentinel_password is not None else None)
    if not addresses:
        raise ConfigurationError("Sentinel needs at least one sentinel address")
    sentinels = [_host_port(address) for address in addresses]
    # One quick try per sentinel: discover_master moves on to the next sentinel by itself, and
    # the master connection's own retry policy repeats the whole discovery with backoff.
    # (redis-py's default would retry a dead sentinel 3 times with a backoff of up to 10 s.)
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": settings.connect_timeout,
                                       "socket_connect_timeout": settings.connect_timeout,
                                       "retry": Retry(NoBackoff(), 0)}
    if sentinel_username:
        sentinel_kwargs["username"] = sentinel_username
    if sentinel_password is not None:
        sentinel_kwargs["password"] = sentinel_password
    tls = settings.tls_ca_file is not None or parts.scheme.startswith("rediss")
    if tls:
        sentinel_kwargs.update({"ssl": True, **_tls_options(settings)})
        common.update({"ssl": True, **_tls_options(settings)})
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **common)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(
        master_name, db=db, max_connections=max_connections,
        connection_pool_class=BlockingSentinelConnectionPool,
        timeout=settings.connect_timeout + 15,
        connection_class=FastSentinelSSLConnection if tls else FastSentinelConnection)
    return client


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"bad sentinel address {address!r}: expected host:port")
    return host.strip("[]"), int(port)


async def eviction_policy(client: Any) -> str | None:
    """The server's ``maxmemory-policy``, or None when it cannot be read (ACL, managed Redis)."""
    try:
        info = await client.info("memory")
    except Exception:
        return None
    policy = info.get("maxmemory_policy")
    return str(policy) if policy is not None else None


async def warn_if_evicting(client: Any) -> str | None:
    """Log a loud warning when the server may evict keys that hold jobs; returns the policy."""
    policy = await eviction_policy(client)
    if policy is not None and policy not in SAFE_POLICIES:
        log.warning(
            "REDIS WILL EVICT JOBS: maxmemory-policy is %r; set it to 'noeviction' "
            "(an LRU/random policy silently drops waiting jobs when memory is full)", policy)
    return policy
