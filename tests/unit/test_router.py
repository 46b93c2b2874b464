"""Router: job name -> handler, async or sync detection, duplicates, fallback."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from streamflow import Job, Router
from streamflow.router import Route, as_router


async def async_handler(job: Job) -> None:
    return None


def sync_handler(job: Job) -> None:
    return None


class AsyncCallable:
    async def __call__(self, job: Job) -> None:
        return None


class SyncCallable:
    def __call__(self, job: Job) -> None:
        return None


@pytest.mark.parametrize(
    "handler, is_async",
    [
        (async_handler, True),
        (sync_handler, False),
        (AsyncCallable(), True),
        (SyncCallable(), False),
        (functools.partial(async_handler), True),
        (functools.partial(sync_handler), False),
        (lambda job: None, False),
        (print, False),
    ],
    ids=["async-def", "def", "async-callable", "callable", "partial-async", "partial-sync",
         "lambda", "builtin"],
)
def test_async_and_sync_handlers_are_told_apart(handler: Any, is_async: bool) -> None:
    route = Route.of(handler)
    assert route.is_async is is_async
    assert route.handler is handler


def test_decorator_registers_and_returns_the_function() -> None:
    router = Router()

    @router.handler("payment.captured")
    async def captured(job: Job) -> None:
        return None

    route = router.resolve("payment.captured")
    assert route is not None and route.handler is captured and route.is_async
    assert router.names == ["payment.captured"]


def test_add_registers_a_sync_handler() -> None:
    router = Router()
    router.add("report.daily", sync_handler)
    route = router.resolve("report.daily")
    assert route is not None and route.handler is sync_handler and not route.is_async


def test_duplicate_registration_is_refused_and_keeps_the_first() -> None:
    router = Router()
    router.add("x", sync_handler)
    with pytest.raises(ValueError, match="already registered"):
        router.add("x", async_handler)
    with pytest.raises(ValueError, match="already registered"):
        router.handler("x")(async_handler)
    route = router.resolve("x")
    assert route is not None and route.handler is sync_handler


def test_unknown_names_resolve_to_none_without_fallback() -> None:
    router = Router()
    router.add("known", sync_handler)
    assert router.resolve("unknown") is None


def test_fallback_handles_unknown_names_only() -> None:
    router = Router()
    router.add("known", sync_handler)
    returned = router.fallback(async_handler)
    assert returned is async_handler
    unknown = router.resolve("anything.else")
    assert unknown is not None and unknown.handler is async_handler and unknown.is_async
    known = router.resolve("known")
    assert known is not None and known.handler is sync_handler
    assert router.names == ["known"]


def test_names_are_sorted() -> None:
    router = Router()
    for name in ("b", "c", "a"):
        router.add(name, sync_handler)
    assert router.names == ["a", "b", "c"]


def test_as_router_wraps_one_callable_as_the_fallback() -> None:
    router = as_router(sync_handler)
    route = router.resolve("whatever")
    assert route is not None and route.handler is sync_handler
    assert router.names == []
    existing = Router()
    assert as_router(existing) is existing


def test_as_router_refuses_what_cannot_handle_jobs() -> None:
    with pytest.raises(TypeError, match="Router or a callable"):
        as_router("not callable")  # type: ignore[arg-type]
