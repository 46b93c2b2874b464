"""Shared CLI plumbing: the settings of a command, and running it with clean errors."""

from __future__ import annotations

import contextlib
import errno
import sys
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import typer
from pydantic import ValidationError
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..connection import redact
from ..discovery import known_queues, queue_exists
from ..errors import QueueFull, StreamflowError
from ..queue import Queue
from ..settings import StreamflowSettings, settings_error
from ._app import StdoutClosed
from ._output import fail

T = TypeVar("T")


class CliError(Exception):
    """A failure to report as one line with an exit code (2: bad input, 1: the server)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Need(Enum):
    """What a command needs of its queue."""

    ANY = "any"        # no check (worker: may start before any producer)
    EXISTING = "read"  # read commands: an unknown queue is an error
    WRITE = "write"    # write commands: an unknown queue needs --create


def load_settings(redis_url: str | None, prefix: str | None) -> StreamflowSettings:
    """Settings from the environment with the root options applied; bad ones are usage errors."""
    try:
        settings = StreamflowSettings()
    except ValidationError as exc:
        raise typer.BadParameter(settings_error(exc)) from None
    except ValueError as exc:
        raise typer.BadParameter(f"bad settings: {exc}") from None
    if redis_url:
        settings.redis.url = settings.redis_url = redis_url
    if prefix:
        settings.prefix = prefix
    check_url(settings.redis.url)
    return settings


_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


def check_url(url: str) -> None:
    """Refuse a Redis URL the client would misread (a db that is not a number is not db 0)."""
    try:
        parts = urlsplit(url)
        if parts.scheme.endswith("sentinel"):  # h1:26379,h2:26379: one port per sentinel
            for host in parts.netloc.rpartition("@")[2].split(","):
                port = host.rpartition("]")[2].partition(":")[2]
                if port and not port.isdigit():
                    raise ValueError(f"port {port!r} is not a number")
        else:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise typer.BadParameter(f"bad Redis URL {redact(url)}: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise typer.BadParameter(
            f"bad Redis URL {redact(url)}: the scheme must be one of {', '.join(_SCHEMES)}")
    if parts.scheme == "unix":
        return
    path = [p for p in parts.path.split("/") if p]
    db = path[-1] if path and (not parts.scheme.endswith("sentinel") or len(path) > 1) else "0"
    if not db.isdigit():
        raise typer.BadParameter(
            f"bad Redis URL {redact(url)}: the database must be a number (e.g. /0), got {db!r}")


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
    except StdoutClosed:
        raise
    except CliError as exc:
        raise fail(str(exc), exc.code) from None
    except BrokenPipeError:
        if _stdout_closed():
            raise StdoutClosed from None
        raise fail(f"cannot reach Redis at {redact(settings.redis.url)}: broken pipe", 1) \
            from None
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        if isinstance(exc, AuthenticationError):
            raise fail(f"Redis refused the credentials: {exc}", 1) from None
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise fail(f"address in use: {exc.strerror}", 2) from None
        raise fail(f"cannot reach Redis at {redact(settings.redis.url)}: {exc}", 1) from None
    except NoPermissionError as exc:
        raise fail(f"the Redis user lacks a permission: {exc}", 1) from None
    except QueueFull as exc:
        raise fail(str(exc), 1) from None
    except (StreamflowError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    except RedisError as exc:
        raise fail(f"Redis error: {exc}", 1) from None


def _stdout_closed() -> bool:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    return False


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error inside (nested) task-group exception groups."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def queue_of(ctx: typer.Context, name: str) -> Queue:
    """A ``Queue`` for a one-shot command (fails fast when Redis is down)."""
    try:
        return Queue(name, settings=quick(settings_of(ctx)))
    except ValueError as exc:
        raise fail(str(exc), 2) from None


async def check_queue(queue: Queue, need: Need, create: bool = False) -> None:
    """Refuse an unknown queue: read commands always, write commands unless ``create``."""
    if need is Need.ANY or (need is Need.WRITE and create):
        return
    if await queue_exists(queue.client, queue.keys):
        return
    raise CliError(await unknown_queue_message(queue, need))


async def unknown_queue_message(queue: Queue, need: Need) -> str:
    """``unknown queue 'x'`` with the known ones (what ``streamflow queues`` lists)."""
    try:
        known = await known_queues(queue.client, queue.settings.prefix)
    except NoPermissionError:
        known = None
    if known is None:
        listed = "this Redis user may not list the queues (SCAN)"
    elif known:
        listed = f"known: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''}"
    else:
        listed = f"no queues under prefix {queue.settings.prefix!r}"
    hint = "; pass --create to create it" if need is Need.WRITE else ""
    return f"unknown queue {queue.name!r} ({listed}){hint}"


def run_with_queue(ctx: typer.Context, name: str, fn: Callable[[Queue], Awaitable[T]], *,
                   need: Need = Need.EXISTING, create: bool = False) -> T:
    """Open the queue, check it is known (see ``Need``), run ``fn`` with it, close it; errors
    as in ``run``."""
    queue = queue_of(ctx, name)

    async def main() -> T:
        try:
            await check_queue(queue, need, create)
            with contextlib.suppress(RedisError, OSError):  # fn meets it after its checks
                await queue.discover()  # a partitioned queue: its partitions, summed
            return await fn(queue)
        finally:
            await queue.close()

    return run(queue.settings, main)
