"""Commands are written without a task per write; a write the server stops reading still ends
at the socket timeout, with the connection dropped."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamflow import StreamflowSettings
from streamflow.connection import create_client
from tests.conftest import RedisServer
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.anyio

PING = b"*1\r\n$4\r\nPING\r\n"


def _client(url: str, socket_timeout: float) -> Any:
    settings = StreamflowSettings.from_url(url)
    settings.redis.socket_timeout = socket_timeout
    return create_client(settings.redis, max_connections=2)


async def test_a_small_command_is_written_without_a_task(redis_server: RedisServer) -> None:
    client = _client(redis_server.url, 5.0)
    connection = await client.connection_pool.get_connection()
    loop = asyncio.get_running_loop()
    created: list[object] = []
    default = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        created.append(coro)
        return (default(loop, coro, **kwargs) if default
                else asyncio.Task(coro, loop=loop, **kwargs))

    loop.set_task_factory(counting)
    try:
        await connection.send_packed_command(PING)
    finally:
        loop.set_task_factory(default)
    assert created == []  # redis-py's own write wraps it in asyncio.wait_for: one task each
    assert await connection.read_response() == b"PONG"
    await client.connection_pool.release(connection)
    await client.aclose()


async def test_a_write_the_server_stops_reading_times_out(redis_server: RedisServer) -> None:
    with FaultProxy(redis_server.port) as proxy:
        client = _client(proxy.url, 0.5)
        connection = await client.connection_pool.get_connection()
        await connection.send_packed_command(PING)
        assert await connection.read_response() == b"PONG"
        proxy.stall()
        value = b"x" * (64 << 20)  # more than the socket buffers hold: the write must wait
        command = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%b\r\n" % (len(value), value)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError, match="Timeout writing"):
            await connection.send_packed_command(command)
        assert time.monotonic() - started < 5  # bounded by the socket timeout, not hung
        assert not connection.is_connected  # half a command was sent: never used again
        proxy.resume()
        await client.connection_pool.release(connection)
        await client.aclose()


async def test_a_due_health_check_and_a_dropped_connection_take_redis_pys_own_path(
        redis_server: RedisServer) -> None:
    settings = StreamflowSettings.from_url(redis_server.url)
    settings.redis.health_check_interval = 30
    client = create_client(settings.redis, max_connections=2)
    connection = await client.connection_pool.get_connection()
    probe = redis_server.client()
    pings = lambda: probe.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)  # noqa: E731
    before = pings()
    connection.next_health_check = -1  # due: the write checks the connection first
    await connection.send_packed_command(PING)
    assert await connection.read_response() == b"PONG"
    assert pings() == before + 2  # the health check's PING, then ours
    await connection.disconnect()
    await connection.send_packed_command(PING)  # not connected: it connects, then writes
    assert await connection.read_response() == b"PONG"
    assert connection.is_connected
    await client.connection_pool.release(connection)
    await client.aclose()
