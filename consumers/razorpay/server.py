"""uvicorn options that keep slow or many clients from holding the ingress.

uvicorn closes idle keep-alive connections, but a client that sends its request headers one
byte at a time is never timed out: the connection and its memory are held for as long as the
client likes. The protocols here close a connection whose request headers are not complete
``header_timeout`` seconds after it opened (or after the previous response); the app itself
answers 408 to a body not received within ``body_timeout``; ``limit_concurrency`` answers 503
past ``max_connections`` open connections.

Usage::

    uvicorn.run(app, host="0.0.0.0", port=8000, **server_options(settings))
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

from .deadlines import Sweep, sweep_of, tick_for
from .settings import RazorpaySettings

log = logging.getLogger("consumers.razorpay")

MAX_HEADER_BYTES = 16 * 1024
"""Largest request head h11 buffers (uvicorn's default is 16 KiB as well; stated here)."""


class _HeaderDeadline:
    """Closes the connection when a request's headers are not in within ``header_timeout``.

    The deadlines of all connections live on one `Sweep` per event loop: arming a timer of
    its own on every request cost each webhook about 1.6 µs."""

    header_timeout: ClassVar[float] = 10.0
    _header_sweep: Sweep

    # Attributes of uvicorn's protocols.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def _arm_header_deadline(self) -> None:
        self._header_sweep.set(self, self.header_timeout, _HeaderDeadline._too_slow)

    def _headers_in(self) -> None:
        self._header_sweep.clear(self)

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            log.info("closing a connection whose request headers took over %g s",
                     self.header_timeout)
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._header_sweep = sweep_of(self.loop, "headers", tick_for(self.header_timeout))
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_in()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        # A pipelined request may already be in; otherwise the next one's headers get a fresh
        # deadline (the keep-alive timer alone is cancelled by the first byte that arrives).
        if not self.transport.is_closing() and (self.cycle is None
                                                or self.cycle.response_complete):
            self._arm_header_deadline()


class HeadWithBody:
    """The transport of one uvicorn request cycle: the response head is held back until the
    first write of the body and both go out in one write (one send to the kernel, one wake-up
    of the client, instead of two). The head is written at the end of the loop iteration at the
    latest, whatever the app does between the two messages. Other writes (``100 Continue``, later
    body chunks) pass straight through.
    """

    __slots__ = ("_cycle", "_head_seen", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop
        self._held: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif not self._head_seen and self._cycle.response_started:
            self._head_seen = True  # uvicorn marks the response started, then writes its head
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write the held head, if any (the body has not come within the iteration)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedH11Protocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with a deadline on request headers."""

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a new request: its headers are complete
            self._headers_in()


if importlib.util.find_spec("httptools") is not None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _SweptKeepAlive(HttpToolsProtocol):
        """uvicorn's keep-alive timeout (an idle connection is closed ``timeout_keep_alive``
        seconds after its last response) on a `Sweep` instead of a timer armed per response.

        ``on_response_complete`` is uvicorn's own, step for step (count the request, resume
        reading, start a pipelined request), except for where the idle deadline is kept."""

        _idle_sweep: Sweep

        def connection_made(self, transport: Any) -> None:
            self._idle_sweep = sweep_of(self.loop, "keep-alive", tick_for(self.timeout_keep_alive))
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            self._idle_sweep.clear(self)
            super().connection_lost(exc)

        def _unset_keepalive_if_required(self) -> None:
            self._idle_sweep.clear(self)

        def on_response_complete(self) -> None:
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._idle_sweep.clear(self)
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._idle_sweep.set(self, self.timeout_keep_alive,
                                     HttpToolsProtocol.timeout_keep_alive_handler)

    # `_SweptKeepAlive` restates uvicorn's own on_response_complete (0.54): with a uvicorn
    # whose protocol lacks the parts it calls, uvicorn's per-response timer stays
    _KEEP_ALIVE: type[Any] = _SweptKeepAlive if all(
        hasattr(HttpToolsProtocol, name) for name in (
            "on_response_complete", "_unset_keepalive_if_required", "_start_asgi_task",
            "timeout_keep_alive_handler")) else HttpToolsProtocol

    class GuardedHttpToolsProtocol(_HeaderDeadline, _KEEP_ALIVE):  # type: ignore[misc]
        """uvicorn's httptools protocol (the faster parser) with a deadline on headers, whose
        responses go out in one write each (`HeadWithBody`), and whose per-connection timers
        live on `Sweep`s."""

        def on_headers_complete(self) -> None:
            self._headers_in()
            super().on_headers_complete()
            if self.cycle is not None:
                self.cycle.transport = HeadWithBody(self.transport, self.cycle, self.loop)

    FASTEST: type[Any] = GuardedHttpToolsProtocol
else:  # pragma: no cover - httptools comes with uvicorn[standard]
    FASTEST = GuardedH11Protocol


def set_header_timeout(seconds: float) -> None:
    """The header deadline of every connection this process serves from now on."""
    _HeaderDeadline.header_timeout = seconds


def server_options(settings: RazorpaySettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that bound slow clients."""
    set_header_timeout(settings.header_timeout)
    return {
        "http": FASTEST,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
