"""Secrets in URLs and error texts are masked, whatever the scheme's case or the password holds."""

from __future__ import annotations

import pytest

from streamflow.connection import redact


@pytest.mark.parametrize(("text", "secret", "kept"), [
    ("REDIS://u:hunter2@127.0.0.1:6379/0", "hunter2", "REDIS://u:***@127.0.0.1:6379/0"),
    ("redis://u:p@ss@w0rd@127.0.0.1:6379/0", "ss@w0rd", "redis://u:***@127.0.0.1:6379/0"),
    ("redis://127.0.0.1:6379/0?password=hunter2&db=1", "hunter2",
     "redis://127.0.0.1:6379/0?password=***&db=1"),
    ("rediss://h:6380/0?Sentinel_Password=hunter2", "hunter2",
     "rediss://h:6380/0?Sentinel_Password=***"),
    ("Redis+Sentinel://w:hunter2@s1:26379,s2:26379/streamflow/0", "hunter2",
     "Redis+Sentinel://w:***@s1:26379,s2:26379/streamflow/0"),
    ("redis://:hunter2@h:6379", "hunter2", "redis://:***@h:6379"),
    ("redis://u:pa/ss?wd@h:6379/0", "pa/ss?wd", "redis://u:***@h:6379/0"),
    ("db down: postgresql://ledger:hunter2@db:5432/x (retrying)", "hunter2",
     "db down: postgresql://ledger:***@db:5432/x (retrying)"),
    ("two: redis://a:hunter2@h1 and REDISS://b:hunter2@h2/0", "hunter2",
     "two: redis://a:***@h1 and REDISS://b:***@h2/0"),
], ids=["upper-case-scheme", "at-in-password", "query-password", "query-any-case",
        "sentinel-url", "no-user", "slash-in-password", "in-error-text", "several"])
def test_secrets_are_masked(text: str, secret: str, kept: str) -> None:
    assert secret not in redact(text)
    assert redact(text) == kept


@pytest.mark.parametrize("text", ["redis://127.0.0.1:6379/0", "redis://worker@h:6379/0",
                                  "no url here: user:pass@host", "unix:///tmp/redis.sock"])
def test_what_holds_no_secret_is_unchanged(text: str) -> None:
    assert redact(text) == text
