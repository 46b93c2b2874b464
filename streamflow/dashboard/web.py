"""Rendering: the Jinja2 environment, filters, flash messages and the page helper."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from .config import DashboardConfig
from .security import USER_COOKIE, cookie_path, csrf_token, finish
from .state import Dashboard

HERE = Path(__file__).parent
FLASH_COOKIE = "sfdash_flash"
FOLD_BYTES = 4096


def duration(ms: int | None) -> str:
    """``1h 02m``, ``3m 04s``, ``12.3s``, ``250ms`` or ``-``."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"


def timestamp(ms: int | None) -> str:
    """A UTC time with milliseconds, or ``-``."""
    if not ms:
        return "-"
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC"


def pretty(value: Any) -> str:
    """Indented JSON (non-JSON values as their text)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
                            | orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return str(value)


def number(value: int | None) -> str:
    """``1,234,567``."""
    return "-" if value is None else f"{value:,}"


def build_templates() -> Jinja2Templates:
    """The template set with the dashboard's filters."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters.update(duration=duration, timestamp=timestamp, pretty=pretty, number=number,
                       urlpart=lambda text: quote(str(text), safe=""))
    env.globals["FOLD_BYTES"] = FOLD_BYTES
    return templates


def dashboard_of(request: Request) -> Dashboard:
    """The app's ``Dashboard``."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def config_of(request: Request) -> DashboardConfig:
    """The app's ``DashboardConfig``."""
    return dashboard_of(request).config


def render(request: Request, template: str, context: dict[str, Any],
           status_code: int = 200) -> Response:
    """A page with the common context (config, CSRF token, flash) and the CSRF cookie."""
    config = config_of(request)
    flash = request.cookies.get(FLASH_COOKIE)
    base = {
        "request": request, "config": config, "read_only": config.read_only,
        "csrf": csrf_token(request), "flash": _read_flash(flash),
        "auth": config.token is not None, "user": request.cookies.get(USER_COOKIE, ""),
        "refresh_ms": config.refresh_ms,
    }
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, template, {**base, **context},
                                          status_code=status_code)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=cookie_path(request))
    return finish(request, response)


def _read_flash(raw: str | None) -> dict[str, str] | None:
    if not raw:
        return None
    kind, _, text = raw.partition(":")
    return {"kind": kind if kind in ("ok", "error") else "ok", "text": unquote(text)[:500]}


def redirect(request: Request, target: str, message: str, *, error: bool = False) -> Response:
    """303 to ``target`` with a one-shot message shown on the next page."""
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(FLASH_COOKIE, f"{'error' if error else 'ok'}:{quote(message[:500])}",
                        path=cookie_path(request), httponly=True, samesite="strict")
    return response
