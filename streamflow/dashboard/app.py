"""``create_app``: the dashboard as an ASGI app, standalone or mounted under a path."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..connection import redact
from ..settings import StreamflowSettings
from . import actions, login, pages
from .config import DashboardConfig
from .security import AuthGate
from .state import Dashboard, UnknownQueue
from .web import HERE, build_templates, render

log = logging.getLogger("streamflow.dashboard")


def create_app(config: DashboardConfig | None = None, *, settings: StreamflowSettings | None
               = None, client: Any = None, **options: Any) -> Starlette:
    """The dashboard app. Options are the fields of ``DashboardConfig`` (or pass one).

    Usage, mounted in a service::

        from streamflow.dashboard import create_app
        app.mount("/ops/queues", create_app(token=os.environ["DASHBOARD_TOKEN"],
                                            read_only=True))

    ``client``: a Redis client to share (else one is made from the settings on first use).
    """
    if config is None:
        config = DashboardConfig(settings=settings or StreamflowSettings(), **options)
    elif options or settings is not None:
        raise TypeError("pass either a DashboardConfig or options, not both")
    dashboard = Dashboard(config, client=client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dashboard.aclose()

    static = StaticFiles(directory=str(HERE / "static"))
    app = Starlette(
        routes=[*pages.routes, *actions.routes, *login.routes,
                Mount("/static", app=static, name="static")],
        middleware=[Middleware(AuthGate, token=config.token)],
        exception_handlers={UnknownQueue: _unknown_queue, RedisError: _redis_error,
                            HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    app.state.templates = build_templates()
    return app


async def _unknown_queue(request: Request, exc: Exception) -> Response:
    return render(request, "message.html", {"title": "Unknown queue", "message": str(exc)}, 404)


async def _redis_error(request: Request, exc: Exception) -> Response:
    url = redact(request.app.state.dashboard.settings.redis.url)
    return render(request, "message.html", {
        "title": "Redis unavailable",
        "message": f"cannot read from Redis at {url}: {type(exc).__name__}: {exc}"}, 503)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    return render(request, "message.html", {"title": str(status), "message": detail}, status)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("dashboard page failed: %s", request.url.path, exc_info=exc)
    return HTMLResponse("<!doctype html><title>Error</title><h1>Error</h1><p>this page failed; "
                        "the server log has the details</p>", status_code=500)
