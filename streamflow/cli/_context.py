"""Shared CLI plumbing: the settings of a command, and running it with clean errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import typer
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..connection import redact
from ..errors import StreamflowError
from ..queue import Queue
from ..settings import StreamflowSettings
from ._output import fail

T = TypeVar("T")


def settings_of(ctx: typer.Context) -> StreamflowSettings:
    """The settings built by the root callback."""
    settings: StreamflowSettings = ctx.ensure_object(StreamflowSettings)
    return settings


def quick(settings: StreamflowSettings) -> StreamflowSettings:
    """A copy for one-shot commands: fail fast instead of retrying for a minute."""
    copy = settings.model_copy(deep=True)
    copy.redis.retry_attempts = 1
    copy.redis.connect_timeout = min(copy.redis.connect_timeout, 3.0)
    return copy


def run(settings: StreamflowSettings, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` on an event loop; Redis and input errors become one line and an exit code."""
    try:
        try:
            return anyio.run(fn)
        except BaseExceptionGroup as group:
            raise _first_leaf(group) from None
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        if isinstance(exc, AuthenticationError):
            raise fail(f"Redis refused the credentials: {exc}", 1) from None
        raise fail(f"cannot reach Redis at {redact(settings.redis.url)}: {exc}", 1) from None
    except NoPermissionError as exc:
        raise fail(f"the Redis user lacks a permission: {exc}", 1) from None
    except (StreamflowError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    except RedisError as exc:
        raise fail(f"Redis error: {exc}", 1) from None


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error inside (nested) task-group exception groups."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def queue_of(ctx: typer.Context, name: str) -> Queue:
    """A ``Queue`` for a one-shot command (fails fast when Redis is down)."""
    return Queue(name, settings=quick(settings_of(ctx)))


def run_with_queue(ctx: typer.Context, name: str,
                   fn: Callable[[Queue], Awaitable[T]]) -> T:
    """Open the queue, run ``fn`` with it, close it; errors as in ``run``."""
    try:
        queue = queue_of(ctx, name)
    except ValueError as exc:
        raise fail(str(exc), 2) from None

    async def main() -> T:
        try:
            return await fn(queue)
        finally:
            await queue.close()

    return run(queue.settings, main)
