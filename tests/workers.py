"""Worker subprocesses for tests that signal or kill them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_worker(redis_url: str, queue: str, *, consumer: str, concurrency: int = 4,
                 app: str = "tests.apps:router", options: tuple[str, ...] = (),
                 **env: str) -> subprocess.Popen[bytes]:
    """``streamflow worker QUEUE --app tests.apps:router`` (or ``app``, with more command-line
    ``options``) as a child process."""
    environment = {**os.environ, "STREAMFLOW_REDIS_URL": redis_url,
                   "STREAMFLOW_WORKER__BLOCK_MS": "200", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "streamflow", "worker", queue, "--app", app,
         "--consumer", consumer, "--concurrency", str(concurrency), "--log-level", "WARNING",
         *options],
        cwd=ROOT, env=environment)  # output goes to the test's captured stdout/stderr
