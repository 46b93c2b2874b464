"""A TCP proxy the tests control: reset, stall, delay, or drop a reply after forwarding.

It runs its own asyncio loop in a daemon thread, so sync tests, async tests and worker
subprocesses can all go through it. Point a client at ``proxy.url`` instead of the server's.

    with FaultProxy(server.port) as proxy:
        q = Queue(name, url=proxy.url)
        proxy.drop_reply_after(b"FCALL")     # the next FCALL runs, its reply never arrives
        proxy.reset()                        # RST every open connection now
        proxy.stall()                        # hold every byte until proxy.resume()
        proxy.delay(0.05)                    # 50 ms before each forwarded chunk

Only loopback is ever a target.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

_CHUNK = 65536


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    drop_reply: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        _abort(self.client)
        _abort(self.server)


class FaultProxy:
    """A loopback TCP proxy in front of ``127.0.0.1:<target_port>`` with injectable faults."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self.resets = 0
        self.dropped_replies = 0
        self._links: set[_Link] = set()
        self._delay_s = 0.0
        self._refuse = False
        self._drop_pattern: bytes | None = None
        self._drop_count = 0
        self._flowing: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="faultproxy")

    @property
    def url(self) -> str:
        """A redis:// URL that goes through the proxy."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        self._call(self._start)
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- faults (callable from any thread) ---------------------------------------------------

    def reset(self) -> int:
        """RST every open connection; returns how many were cut."""
        return int(self._call(self._reset_all))

    def stall(self) -> None:
        """Hold every byte, both ways, until ``resume()`` (connections stay open)."""
        self._call(self._set_flowing, False)

    def resume(self) -> None:
        """Forward again what was held, and what comes next."""
        self._call(self._set_flowing, True)

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before forwarding each chunk (0 turns it off)."""
        self._delay_s = seconds

    def refuse(self, refuse: bool = True) -> None:
        """Close new connections at once (the server looks down)."""
        self._refuse = refuse

    def drop_reply_after(self, pattern: bytes, count: int = 1) -> None:
        """The next ``count`` client chunks containing ``pattern`` reach the server; the reply
        to each is swallowed and that connection is reset: the command ran, the client never
        learns it."""
        self._drop_pattern = pattern
        self._drop_count = count

    # -- internals ---------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()

    def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        self.resets += len(links)
        return len(links)

    def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refuse:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        self.accepted += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [asyncio.create_task(self._pipe(link, reader, up_writer, upstream=True)),
                      asyncio.create_task(self._pipe(link, up_reader, writer, upstream=False))]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)

    async def _pipe(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if self._delay_s:
                    await asyncio.sleep(self._delay_s)
                if link not in self._links:
                    return
                if not upstream and link.drop_reply:
                    self.dropped_replies += 1
                    self._links.discard(link)
                    link.abort()
                    return
                if (upstream and self._drop_count > 0 and self._drop_pattern is not None
                        and self._drop_pattern in data):
                    self._drop_count -= 1
                    link.drop_reply = True
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if link in self._links:
                self._links.discard(link)
                link.abort()
