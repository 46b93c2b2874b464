"""``streamflow dashboard``: which binds count as this machine only."""

from __future__ import annotations

import pytest

from streamflow.cli.dashboard import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_binds_need_no_token(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "dashboard.internal", ""])
def test_other_binds_need_a_token(host: str) -> None:
    assert not is_loopback(host)
