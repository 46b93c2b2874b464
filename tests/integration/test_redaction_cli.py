"""``streamflow stats`` against an unreachable Redis names the URL without its secrets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import HOST, free_port
from tests.workers import ROOT


@pytest.mark.parametrize("template", [
    "REDIS://u:hunter2secret@{host}:{port}/0",
    "redis://u:p@ss@hunter2secret@{host}:{port}/0",
    "redis://{host}:{port}/0?password=hunter2secret",
], ids=["upper-case-scheme", "at-in-password", "query-password"])
def test_the_cli_never_prints_a_password(template: str) -> None:
    url = template.format(host=HOST, port=free_port())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STREAMFLOW_") and k != "REDIS_URL"}
    env["STREAMFLOW_REDIS__RETRY_ATTEMPTS"] = "0"
    result = subprocess.run([sys.executable, "-m", "streamflow", "--redis-url", url, "stats", "q"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1, result.stderr
    assert "hunter2secret" not in result.stderr + result.stdout
    assert "***" in result.stderr
