"""A tiny HTTP endpoint for probes: ``/livez`` and ``/readyz`` (and ``/metrics`` when given)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.abc import SocketStream, TaskStatus

Probe = Callable[[], bool]


async def serve_health(port: int, live: Probe, ready: Probe, *, host: str = "0.0.0.0",
                       metrics: Callable[[], bytes] | None = None,
                       task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve probes on ``host:port`` until cancelled; reports the bound port when started."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            with anyio.move_on_after(5):
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 8192:
                    chunk = await stream.receive(4096)
                    if not chunk:
                        return
                    request += chunk
                parts = request.split(b" ", 2)
                path = parts[1].decode(errors="replace") if len(parts) > 1 else "/"
                status, body, kind = _answer(path.split("?")[0], live, ready, metrics)
                head = (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
                await stream.send(head.encode() + body)

    async with listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(handle)


def _answer(path: str, live: Probe, ready: Probe,
            metrics: Callable[[], bytes] | None) -> tuple[str, bytes, str]:
    text = "text/plain; charset=utf-8"
    if path == "/livez":
        return ("200 OK", b"ok\n", text) if live() else ("503 Service Unavailable", b"dead\n",
                                                         text)
    if path == "/readyz":
        return ("200 OK", b"ready\n", text) if ready() else ("503 Service Unavailable",
                                                             b"not ready\n", text)
    if path == "/metrics" and metrics is not None:
        return "200 OK", metrics(), "text/plain; version=0.0.4; charset=utf-8"
    return "404 Not Found", b"not found\n", text
