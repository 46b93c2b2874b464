"""The fault proxy itself: each fault does what the chaos tests rely on, on a real Redis."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import RedisServer
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.anyio


def _client(proxy: FaultProxy) -> Redis:
    # no built-in retries: the test must see each fault exactly once
    return Redis.from_url(proxy.url, retry_on_error=[], retry=None, socket_timeout=2)


async def test_commands_pass_through(redis_server: RedisServer, queue_name: str) -> None:
    with FaultProxy(redis_server.port) as proxy:
        client = _client(proxy)
        await client.set(f"{queue_name}:k", "v")
        assert await client.get(f"{queue_name}:k") == b"v"
        assert proxy.accepted == 1
        await client.aclose()


async def test_reset_cuts_open_connections(redis_server: RedisServer, queue_name: str) -> None:
    with FaultProxy(redis_server.port) as proxy:
        client = _client(proxy)
        await client.ping()
        assert proxy.reset() == 1
        with pytest.raises(RedisConnectionError):
            await client.ping()
        await client.ping()  # a new connection goes through
        assert proxy.accepted == 2
        await client.aclose()


async def test_drop_reply_after_forwarding_runs_the_command_but_loses_the_reply(
        redis_server: RedisServer, queue_name: str) -> None:
    key = f"{queue_name}:counter"
    direct = Redis.from_url(redis_server.url)
    with FaultProxy(redis_server.port) as proxy:
        client = _client(proxy)
        await client.ping()
        proxy.drop_reply_after(b"INCR")
        with pytest.raises(RedisConnectionError):
            await client.incr(key)
        assert await direct.get(key) == b"1"  # it ran
        assert proxy.dropped_replies == 1
        assert await client.incr(key) == 2  # the fault fired once
        await client.aclose()
    await direct.aclose()


async def test_stall_holds_bytes_until_resume(redis_server: RedisServer, queue_name: str) -> None:
    with FaultProxy(redis_server.port) as proxy:
        client = _client(proxy)
        await client.ping()
        proxy.stall()
        with anyio.move_on_after(0.3) as scope:
            await client.ping()
        assert scope.cancelled_caught
        proxy.resume()
        await client.aclose()
        client = _client(proxy)
        assert await client.ping()
        await client.aclose()
