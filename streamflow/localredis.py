"""A local Redis for demos and tools: use the one that answers, or start a throwaway one."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, closing

import redis


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(url: str) -> bool:
    """Whether a Redis answers PING at ``url`` within a second."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        with closing(client):
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def start_redis(stack: ExitStack) -> str:
    """Start ``redis-server`` on a free loopback port in a temp folder (no persistence,
    ``noeviction``); ``stack`` stops it and removes the folder. Returns its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no Redis answers and redis-server is not on PATH")
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="streamflow-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder, "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(_stop, process)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not reachable(url):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the local redis-server did not start")
        time.sleep(0.05)
    return url


def local_redis(url: str, stack: ExitStack) -> tuple[str, bool]:
    """The Redis at ``url`` when it answers, else a throwaway one started on ``stack``;
    returns its URL and whether it was started here."""
    if reachable(url):
        return url, False
    return start_redis(stack), True


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
