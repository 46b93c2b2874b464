"""DashboardConfig: what a dashboard shows and allows, fixed when the app is built."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..settings import StreamflowSettings

DEFAULT_SENSITIVE = ("email", "contact", "phone", "mobile", "card", "cvv", "vpa",
                     "account_number", "ifsc", "pan", "aadhaar", "address", "password",
                     "secret", "token")
"""Payload keys masked by default (matched case-insensitively as a whole key or a
``_``-separated part of it: ``customer_email`` and ``card`` both match)."""

TRACE_URL_ENV = "STREAMFLOW_DASHBOARD_TRACE_URL"
TOKEN_ENV = "STREAMFLOW_DASHBOARD_TOKEN"


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """Options of one dashboard app.

    Args:
        queues: show only these queues (no discovery scan); None: every queue under the prefix.
        token: required on every request (login form, or ``Authorization: Bearer``); None: open.
        sensitive_fields: payload keys masked on every queue, unless ``show_sensitive``.
        queue_sensitive_fields: extra masked keys per queue name.
        trace_url: a URL template with ``{trace_id}`` (Jaeger, Tempo...) for the job page link.
        refresh_ms: how often the pages poll for fresh counts (at most 2000).
        discovery_ttl: seconds a discovered queue list is reused before the next SCAN.
    """

    settings: StreamflowSettings = field(default_factory=StreamflowSettings)
    queues: tuple[str, ...] | None = None
    token: str | None = None
    read_only: bool = False
    show_sensitive: bool = False
    sensitive_fields: tuple[str, ...] = DEFAULT_SENSITIVE
    queue_sensitive_fields: Mapping[str, Sequence[str]] = field(default_factory=dict)
    trace_url: str | None = field(default_factory=lambda: os.environ.get(TRACE_URL_ENV) or None)
    refresh_ms: int = 2000
    discovery_ttl: float = 15.0
    group: str | None = None

    def __post_init__(self) -> None:
        if not 250 <= self.refresh_ms <= 2000:
            raise ValueError("refresh_ms must be between 250 and 2000")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("a dashboard token needs at least 8 characters")
        if self.trace_url is not None and "{trace_id}" not in self.trace_url:
            raise ValueError("the trace URL template needs a {trace_id} placeholder")

    def sensitive_for(self, queue: str) -> frozenset[str]:
        """The masked keys of ``queue`` (empty with ``show_sensitive``)."""
        if self.show_sensitive:
            return frozenset()
        extra = self.queue_sensitive_fields.get(queue, ())
        return frozenset(name.lower() for name in (*self.sensitive_fields, *extra))

    @property
    def worker_group(self) -> str:
        """The consumer group whose view the counts show."""
        return self.group or self.settings.worker.group
