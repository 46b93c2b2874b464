"""StreamflowSettings: one typed settings object, read from ``STREAMFLOW_*`` env vars and ``.env``.

Usage::

    settings = StreamflowSettings()                       # env + .env
    settings = StreamflowSettings.from_url("redis://h:6379/0", prefix="pay")
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EventLevel = Literal["all", "outcomes", "failures", "none"]
Isolation = Literal["none", "process"]
Durability = Literal["none", "replicated"]


def _comma_list(value: object) -> object:
    """``"a, b"`` from the environment as ``["a", "b"]``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class RedisSettings(BaseModel):
    """Where Redis is and how to reach it."""

    url: str = "redis://127.0.0.1:6379/0"
    password: SecretStr | None = None
    username: str | None = None
    sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """``host:port`` of each sentinel; when set, ``master_name`` is resolved through them."""
    master_name: str = "streamflow"
    sentinel_password: SecretStr | None = None
    sentinel_username: str | None = None
    cluster: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    socket_timeout: float = 10.0
    connect_timeout: float = 5.0
    retry_attempts: int = 8
    retry_backoff_base: float = 0.05
    retry_backoff_cap: float = 2.0
    health_check_interval: float = 15.0
    lua: Literal["auto", "fcall", "evalsha"] = "auto"
    """How the Lua moves are called: "fcall" (the functions library, Redis >= 7), "evalsha"
    (scripts; Redis 6.2, or users granted EVALSHA), "auto": FCALL where possible."""

    _split_sentinels = field_validator("sentinels", mode="before")(_comma_list)

    @field_validator("password", "sentinel_password", "username", "sentinel_username",
                     "tls_ca_file", "tls_cert_file", "tls_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class QueueDefaults(BaseModel):
    """Per-queue defaults a job inherits unless it carries its own option."""

    attempts: int = Field(3, ge=1)
    backoff: Literal["fixed", "exponential", "jitter"] = "exponential"
    backoff_delay: float = Field(2.0, ge=0)
    backoff_max: float = Field(3600.0, ge=0)
    timeout: float | None = Field(None, gt=0)
    """Per-job handler timeout in seconds; None for no limit."""
    remove_on_complete: int = Field(1000, ge=0)
    """How many results of completed jobs the ``done`` stream keeps (0: none). A handler that
    returns None has no result: its completion is only in the events stream."""
    remove_on_complete_age: float | None = Field(None, gt=0)
    """Also drop results older than this many seconds."""
    remove_on_fail: int = Field(0, ge=0)
    """How many dead letters to keep (0: all, forever: a lost failed payment costs more than
    memory)."""
    remove_on_fail_age: float | None = Field(None, gt=0)
    """Also drop dead letters older than this many seconds."""
    dedup_ttl: float = Field(86400.0, gt=0)
    max_payload_bytes: int = Field(512 * 1024, gt=0)
    events: EventLevel = "outcomes"
    """What the capped events stream records: ``outcomes`` (completed, retrying, dead, stalled,
    progress, promoted...: everything but one ``added``/``delayed`` event per job added),
    ``all`` (those too, an XADD per job on the add path), ``failures`` (retrying, dead,
    stalled...) or ``none``."""
    events_maxlen: int = Field(10_000, ge=0)
    durability: Durability = "none"
    replicated_timeout: float = Field(1.0, gt=0)
    index_fields: list[str] = Field(default_factory=list)
    """Keys of a job's data (top level of a dict) indexed for ``Queue.find`` on every add,
    e.g. ``["payment_id", "order_id"]``; ``add(..., index={...})`` adds more per job."""
    index_ttl: float = Field(7 * 86400.0, gt=0)
    """How many seconds a business-key index lives after its last add (``Queue.find``)."""
    index_cap: int = Field(100, ge=1)
    """How many jobs (the newest) one business-key value keeps in its index."""
    metrics_window: float = Field(86400.0, gt=0)
    """How many seconds of per-minute completed/failed counts ``Queue.metrics`` keeps."""
    log_lines: int = Field(100, ge=1)
    """How many lines ``job.log`` keeps per job (the last ones)."""
    partitions: int = Field(1, ge=1, le=1024)
    """Partitions of a queue: N copies of its key layout, spread over Redis Cluster shards
    (README "Scaling out"). Fixed once the queue holds jobs."""
    ordered: bool = False
    """Per-key order: jobs added with a ``key`` run one at a time per key, in the order added
    (a retry holds the later jobs of its key back)."""
    ordered_prefixes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Per-key order for the keys starting with one of these prefixes only (others run
    freely), e.g. ``["pay_", "order_"]`` (``STREAMFLOW_QUEUE__ORDERED_PREFIXES=pay_,order_``);
    when set, it turns order on whatever ``ordered`` says. Every producer of a queue must use
    the same."""

    _split_prefixes = field_validator("ordered_prefixes", mode="before")(_comma_list)

    @field_validator("ordered_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        if any(not prefix for prefix in value):
            raise ValueError("an ordered key prefix must be a non-empty string "
                             "(ordered=true orders every key)")
        return value

    @property
    def emit_all(self) -> bool:
        """Whether lifecycle events besides failures are written (completed, progress...):
        ``events`` is ``all`` or ``outcomes``."""
        return self.events in ("all", "outcomes")

    @property
    def emit_added(self) -> bool:
        """Whether an add writes an ``added``/``delayed`` event per job (``events="all"``)."""
        return self.events == "all"

    @property
    def emit_failures(self) -> bool:
        """Whether failure events (retrying, dead, stalled...) are written."""
        return self.events != "none"


class WorkerDefaults(BaseModel):
    """How a worker fetches, runs and acknowledges."""

    group: str = "workers"
    consumer: str | None = None
    """Consumer name; default ``<host>-<pid>-<random>`` (in Kubernetes: the pod name)."""
    concurrency: int = Field(50, ge=1)
    stalled_interval: float = Field(30.0, gt=0)
    max_stalled_count: int = Field(1, ge=0)
    block_ms: int = Field(2000, ge=1)
    batch_size: int = Field(500, ge=1)
    shutdown_grace: float = Field(30.0, ge=0)
    promote_interval: float = Field(0.2, gt=0)
    heartbeat_interval: float = Field(5.0, gt=0)
    janitor_interval: float = Field(10.0, gt=0)
    isolation: Isolation = "none"
    """``process``: handlers run in child processes, so that ``os._exit``, a segfault or the
    OOM killer fail one job (reason ``crashed``) instead of killing the worker."""
    isolation_processes: int | None = Field(None, ge=1)
    """Child processes under process isolation (default: the CPU count, at most concurrency)."""
    max_abandoned_threads: int = Field(20, ge=1)
    """Plain-function handlers still running past their deadline; at this many the worker
    stops (to be restarted: threads cannot be killed)."""


class StreamflowSettings(BaseSettings):
    """All settings; env ``STREAMFLOW_PREFIX``, ``STREAMFLOW_REDIS__URL`` (or ``REDIS_URL``)..."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMFLOW_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    redis: RedisSettings = Field(default_factory=RedisSettings)
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("STREAMFLOW_REDIS_URL", "REDIS_URL")
    )
    """Shortcut for ``redis.url``; also read from ``REDIS_URL``."""
    prefix: str = "sf"
    levels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["high", "normal", "low"])
    default_level: str = "normal"
    queue: QueueDefaults = Field(default_factory=QueueDefaults)
    worker: WorkerDefaults = Field(default_factory=WorkerDefaults)

    _split_levels = field_validator("levels", mode="before")(_comma_list)

    def model_post_init(self, __context: object) -> None:
        if self.redis_url:
            self.redis.url = self.redis_url
        if not self.levels or len(set(self.levels)) != len(self.levels):
            raise ValueError("levels must be a non-empty list of distinct names")
        if self.default_level not in self.levels:
            raise ValueError(f"default_level {self.default_level!r} is not one of {self.levels}")

    @classmethod
    def from_url(cls, url: str, **overrides: object) -> StreamflowSettings:
        """Settings from the environment, with the Redis URL (and any field) given here."""
        settings = cls(**overrides)  # type: ignore[arg-type]
        settings.redis.url = url
        settings.redis_url = url
        return settings


def settings_error(exc: ValidationError, env_prefix: str = "STREAMFLOW_") -> str:
    """The first error of ``exc`` as one line naming its environment variable (never the value
    of a secret)."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not loc:
        return f"bad settings ({env_prefix}*): {message}"
    name = env_prefix + "__".join(loc).upper()
    value = first.get("input")
    secret = any(word in loc[-1] for word in ("password", "secret", "token", "url"))
    shown = "" if secret or not isinstance(value, str) else f"={value!r}"
    return f"bad setting {name}{shown}: {message}"


def resolve_settings(url: str | None, settings: StreamflowSettings | None) -> StreamflowSettings:
    """The settings of a Queue, Worker or QueueEvents: ``settings`` (a copy when ``url``
    overrides its Redis URL: the caller's object is never changed), else the environment's."""
    if settings is None:
        return StreamflowSettings.from_url(url) if url else StreamflowSettings()
    if url:
        settings = settings.model_copy(deep=True)
        settings.redis.url = settings.redis_url = url
    return settings


def to_seconds(value: timedelta | float | int) -> float:
    """Seconds from a ``timedelta`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def to_ms(value: timedelta | float | int) -> int:
    """Whole milliseconds from a ``timedelta`` or a number of seconds."""
    return round(to_seconds(value) * 1000)
