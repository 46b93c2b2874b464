"""``streamflow dashboard``: serve the web dashboard (needs ``streamflow[dashboard]``)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from ..connection import create_client, redact
from ._context import quick, run, settings_of
from ._output import fail

LOOPBACK_NAMES = ("localhost",)


def register(app: typer.Typer) -> None:
    """Add the dashboard command to ``app``."""
    app.command("dashboard")(dashboard)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dashboard(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind; other than loopback needs a "
                                           "token or --insecure-no-auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8090,
    queue: Annotated[list[str] | None, typer.Option(
        "--queue", help="Show only this queue (repeatable); default: every queue found.")]
    = None,
    token: Annotated[str | None, typer.Option(
        envvar="STREAMFLOW_DASHBOARD_TOKEN", show_envvar=False,
        help="Require this token (env STREAMFLOW_DASHBOARD_TOKEN).")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="Serve a non-loopback address without a token.")] = False,
    read_only: Annotated[bool, typer.Option("--read-only", help="Hide every action.")] = False,
    show_sensitive: Annotated[bool, typer.Option(
        "--show-sensitive", help="Do not mask sensitive payload fields.")] = False,
    sensitive: Annotated[str | None, typer.Option(
        help="Comma-separated payload keys to mask (replaces the default list).")] = None,
    root_path: Annotated[str, typer.Option(
        help="Path prefix when served behind a proxy under a sub-path, e.g. /queues.")] = "",
) -> None:
    """Serve the web dashboard: queues, jobs, dead letters, workers, actions."""
    try:
        import uvicorn

        from ..dashboard import DEFAULT_SENSITIVE, DashboardConfig, create_app
    except ImportError as exc:
        raise fail(f"the dashboard needs its extra: pip install 'streamflow[dashboard]' "
                   f"({exc.name} is missing)", 2) from None
    if not is_loopback(host) and not token and not insecure_no_auth:
        raise fail(f"binding {host} exposes the dashboard beyond this machine: pass --token "
                   "(or STREAMFLOW_DASHBOARD_TOKEN), or --insecure-no-auth", 2)
    settings = settings_of(ctx)
    fields = tuple(f.strip() for f in sensitive.split(",") if f.strip()) if sensitive \
        else DEFAULT_SENSITIVE
    try:
        config = DashboardConfig(settings=settings, queues=tuple(queue) if queue else None,
                                 token=token or None, read_only=read_only,
                                 show_sensitive=show_sensitive, sensitive_fields=fields)
    except ValueError as exc:
        raise fail(str(exc), 2) from None

    async def ping() -> None:
        client = create_client(quick(settings).redis, max_connections=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    run(settings, ping)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"streamflow dashboard on http://{shown}:{port}{root_path}/ "
               f"(Redis {redact(settings.redis.url)}, prefix {settings.prefix}"
               f"{', read-only' if read_only else ''}{', token required' if token else ''})")
    uvicorn.run(create_app(config), host=host, port=port, root_path=root_path,
                log_level="warning", timeout_graceful_shutdown=3)
