"""RazorpaySettings: the pipeline's configuration, from ``RAZORPAY_*`` env vars and ``.env``.

The webhook secret and the database URL are ``SecretStr``: they print as ``**********`` and are
never logged. Redis and queue defaults come from ``StreamflowSettings`` (``STREAMFLOW_*``,
``REDIS_URL``).

Usage::

    settings = RazorpaySettings()     # RAZORPAY_WEBHOOK_SECRET, DATABASE_URL, RAZORPAY_QUEUE...
    settings = RazorpaySettings(webhook_secret="whsec", database_url="postgresql://db/ledger")
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamflow import StreamflowSettings

MIB = 1024 * 1024

DEFAULT_PRIORITY_ROUTES: dict[str, str] = {
    "payment.captured": "high",
    "payment.failed": "high",
    "refund.*": "high",
    "order.paid": "normal",
    "subscription.*": "normal",
}
"""Event type (exact, or ``family.*``) -> priority level; others get ``default_priority``."""

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class RazorpaySettings(BaseSettings):
    """Everything the ingress and the ledger workers read from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="RAZORPAY_",
        env_file=".env",
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
    )

    webhook_secret: SecretStr | None = None
    """The secret set on the Razorpay dashboard webhook (``RAZORPAY_WEBHOOK_SECRET``)."""
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "RAZORPAY_DATABASE_URL"))
    """``postgresql://...`` for PostgreSQL, ``sqlite:///path`` or unset for SQLite."""
    sqlite_path: Path = Path("razorpay-ledger.sqlite3")
    """The SQLite ledger file used when ``DATABASE_URL`` is unset."""
    table_prefix: str = "rzp_"
    """Prefix of every ledger table name (lets several ledgers share one database)."""
    queue: str = "razorpay"
    """The streamflow queue webhooks are enqueued on."""
    max_body_bytes: int = Field(default=MIB, gt=0)
    priority_routes: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_ROUTES))
    """Replaces the whole routing table, e.g. ``{"payment.*": "high"}`` (JSON in the env)."""
    default_priority: str = "low"
    enqueue_timeout: float = Field(default=5.0, gt=0)
    """Seconds an enqueue may take before the webhook is answered 503 (Razorpay retries)."""
    ready_timeout: float = Field(default=1.0, gt=0)
    """Seconds ``/readyz`` waits for Redis to answer PING."""
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a request's headers (from connect, or from the end of the
    previous response) before the connection is closed: slow clients hold nothing for long."""
    body_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send the whole body once the headers are in (408 past it)."""
    max_connections: int = Field(default=1000, ge=1)
    """Open connections (and requests in flight) past which new requests get 503."""
    keep_alive_timeout: float = Field(default=5.0, gt=0)
    """Seconds an idle keep-alive connection stays open."""
    max_event_age: float | None = Field(default=None, gt=0)
    """Events whose signed ``created_at`` is older are refused (400); default and maximum: the
    queue's dedup TTL, past which a replayed delivery would no longer be a duplicate."""
    max_clock_skew: float = Field(default=300.0, ge=0)
    """Seconds an event's ``created_at`` may lie in the future (clock differences)."""
    refused_log_interval: float = Field(default=10.0, ge=0)
    """At most one log line per reason of refusal in this many seconds (the next one counts
    the refusals it stood for): a flood of forged webhooks cannot flood the logs."""
    job_attempts: int = Field(default=10, ge=1)
    """Attempts of each webhook job: ledger outages are ridden out by retries."""
    db_retry_delay: float = Field(default=1.0, ge=0)
    """Seconds before a job whose ledger write failed transiently runs again."""
    db_lock_timeout: float = Field(default=5.0, gt=0)
    """Seconds a ledger write waits for a lock (SQLite busy timeout, PostgreSQL lock_timeout)."""
    db_pool_size: int = Field(default=10, ge=1)

    @field_validator("table_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("table_prefix must be lowercase letters, digits and underscores")
        return value

    def streamflow(self, redis_url: str | None = None) -> StreamflowSettings:
        """Streamflow settings from the environment, with ``redis_url`` if given."""
        if redis_url:
            return StreamflowSettings.from_url(redis_url)
        return StreamflowSettings()

    def secret(self) -> bytes:
        """The webhook secret as bytes; ``ValueError`` when it is not configured."""
        if self.webhook_secret is None or not self.webhook_secret.get_secret_value():
            raise ValueError("RAZORPAY_WEBHOOK_SECRET is not set")
        return self.webhook_secret.get_secret_value().encode()
