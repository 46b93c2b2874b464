"""Writing a command without a task per write.

redis-py's asyncio connection bounds each write with ``asyncio.wait_for``, which on Python 3.11
wraps the write in a new task: a task, its scheduling and a loop turn for every command sent
(profiled: the largest part of a lone caller's round trip after the system calls). A write
can only wait when the transport's buffer is over its high-water mark; the socket takes small
commands whole at once. So the command is written directly, and only when the transport kept
some of it is the drain waited for, under the socket timeout as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class DirectWrite:
    """``send_packed_command`` without redis-py's per-write task (mixed into connections)."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes],
                                  check_health: bool = True) -> None:
        this: Any = self
        writer = this._writer
        if writer is None or this._reader is None or (
                check_health and this.health_check_interval
                and asyncio.get_running_loop().time() > this.next_health_check):
            # not connected, or a health check is due: redis-py's own path does both
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if isinstance(command, str):
            command = command.encode()
        try:
            if isinstance(command, bytes):
                writer.write(command)
            else:
                writer.writelines(command)
            if writer.transport.get_write_buffer_size() and this.socket_timeout:
                await asyncio.wait_for(writer.drain(), this.socket_timeout)
            else:  # nothing left in the buffer: the drain cannot wait
                await writer.drain()
        except TimeoutError:  # asyncio's, from wait_for
            await this.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await this.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            # a write cut short (cancelled) may have sent part of a command: the connection
            # cannot be used again
            await this.disconnect(nowait=True)
            raise
