"""HeadWithBody: a response head and its body leave in one write; nothing is held longer than
the loop iteration; writes that are not the head pass straight through."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from consumers.razorpay.server import HeadWithBody

pytestmark = pytest.mark.anyio


class Recorder:
    """The two transport calls uvicorn's cycle makes, recorded."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


def transport() -> tuple[HeadWithBody, Recorder, SimpleNamespace]:
    recorder, cycle = Recorder(), SimpleNamespace(response_started=False)
    return HeadWithBody(recorder, cycle, asyncio.get_running_loop()), recorder, cycle  # type: ignore[arg-type]


async def test_head_and_body_go_out_in_one_write() -> None:
    wrapped, recorder, cycle = transport()
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response: not held
    assert recorder.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.response_started = True
    wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert len(recorder.writes) == 1
    wrapped.write(b"{}")
    assert recorder.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)  # the end-of-iteration flush finds nothing left
    wrapped.write(b"more")  # a later chunk of a streamed body: straight through
    assert recorder.writes[2:] == [b"more"]
    assert wrapped.get_extra_info("peername") == ("127.0.0.1", 1)


async def test_a_head_without_body_leaves_at_the_end_of_the_iteration() -> None:
    wrapped, recorder, cycle = transport()
    cycle.response_started = True
    wrapped.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert recorder.writes == []
    await asyncio.sleep(0)
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]


async def test_close_writes_the_held_head_first() -> None:
    wrapped, recorder, cycle = transport()
    cycle.response_started = True
    wrapped.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    wrapped.close()
    assert recorder.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]
    assert recorder.closed and wrapped.is_closing()
