"""Router: job name -> handler. Handlers are ``async def`` or plain functions (run in a thread)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .job import Job


class AsyncHandler(Protocol):
    """``async def handler(job: Job) -> Any``"""

    def __call__(self, job: Job, /) -> Awaitable[Any]: ...


class SyncHandler(Protocol):
    """``def handler(job: Job) -> Any``, run in a worker thread."""

    def __call__(self, job: Job, /) -> Any: ...


Handler = AsyncHandler | SyncHandler
H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Route:
    """A handler and whether it must run in a thread."""

    handler: Callable[[Job], Any]
    is_async: bool

    @classmethod
    def of(cls, handler: Callable[[Job], Any]) -> Route:
        target = getattr(handler, "__call__", handler)  # noqa: B004 - callable objects too
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(target)
        return cls(handler, is_async)


class Router:
    """Maps job names to handlers.

    Usage::

        router = Router()

        @router.handler("payment.captured")
        async def captured(job: Job) -> None: ...

        router.add("report.daily", build_report)     # a plain function runs in a thread
        router.fallback(log_unknown)                 # names without a handler
    """

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._fallback: Route | None = None
        self._lifespan: Lifespan | None = None

    def handler(self, name: str) -> Callable[[H], H]:
        """Decorator: handle jobs called ``name``."""
        def register(fn: H) -> H:
            self.add(name, fn)
            return fn
        return register

    def add(self, name: str, handler: Callable[[Job], Any]) -> None:
        """Handle jobs called ``name`` with ``handler``."""
        if name in self._routes:
            raise ValueError(f"a handler for {name!r} is already registered")
        self._routes[name] = Route.of(handler)

    def fallback(self, handler: Callable[[Job], Any]) -> Callable[[Job], Any]:
        """Handle jobs whose name has no handler (else they are dead-lettered as no_handler)."""
        self._fallback = Route.of(handler)
        return handler

    def lifespan(self, fn: Lifespan) -> Lifespan:
        """Decorator: an async context manager the worker enters before it fetches its first
        job and leaves after its last ack (open a database pool, an HTTP client...)::

            @router.lifespan
            @asynccontextmanager
            async def resources() -> AsyncIterator[None]:
                async with open_pool() as pool:
                    state.pool = pool
                    yield
        """
        self._lifespan = fn
        return fn

    def resources(self) -> AbstractAsyncContextManager[None]:
        """The lifespan registered with ``lifespan``, or one that does nothing."""
        return self._lifespan() if self._lifespan is not None else _nothing()

    def resolve(self, name: str) -> Route | None:
        """The route of ``name``, the fallback, or None."""
        return self._routes.get(name, self._fallback)

    @property
    def names(self) -> list[str]:
        """The job names with a handler."""
        return sorted(self._routes)


Lifespan = Callable[[], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def as_router(target: Router | Callable[[Job], Any]) -> Router:
    """A router from a router or one callable (which then handles every name)."""
    if isinstance(target, Router):
        return target
    if not callable(target):
        raise TypeError(f"a worker needs a Router or a callable, got {type(target).__name__}")
    router = Router()
    router.fallback(target)
    return router
