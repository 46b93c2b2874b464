"""``streamflow-razorpay``: run the webhook ingress or the ledger workers, send sample webhooks.

Configuration comes from the environment (``RAZORPAY_WEBHOOK_SECRET``, ``DATABASE_URL``,
``RAZORPAY_*``, ``STREAMFLOW_*``/``REDIS_URL``); the options below override the common parts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, NoReturn

import anyio
import typer
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamflow import StreamflowSettings, Worker
from streamflow.cli._app import PROG, RazorpayRootGroup, new_app, run_main
from streamflow.cli._context import check_url
from streamflow.cli._output import fail
from streamflow.connection import redact
from streamflow.settings import settings_error

from .settings import RazorpaySettings

EXTRA = ("starlette", "uvicorn", "httpx", "aiosqlite", "asyncpg")

PROG_NAME = "streamflow-razorpay"
app = new_app(
    PROG_NAME,
    "Razorpay payment pipeline on streamflow.\n\n"
    "--redis-url may come before or after the command. Bad input: one line on stderr, exit "
    "code 2; Redis or the database unreachable: exit code 1.",
    RazorpayRootGroup,
)


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", help="Redis URL (default: STREAMFLOW_REDIS_URL / REDIS_URL).")] = None,
) -> None:
    """Razorpay payment pipeline on streamflow."""
    PROG.set(PROG_NAME)
    if redis_url:
        check_url(redis_url)
    ctx.obj = redis_url


def _settings() -> RazorpaySettings:
    """The settings, once the optional dependencies the commands need are known present."""
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise fail(f"{PROG_NAME} needs the razorpay extra ({', '.join(missing)} missing): "
                   "pip install 'streamflow[razorpay]'")
    try:
        return RazorpaySettings()
    except ValidationError as exc:
        raise fail(settings_error(exc, "RAZORPAY_")) from None


def _streamflow(ctx: typer.Context, settings: RazorpaySettings) -> StreamflowSettings:
    try:
        sf = settings.streamflow(ctx.obj)
    except ValidationError as exc:
        raise fail(settings_error(exc)) from None
    check_url(sf.redis.url)
    return sf


def _run(main: Callable[[], Awaitable[None]], sf: StreamflowSettings | None = None) -> None:
    """Run ``main`` on asyncio (uvloop when installed); failures are one line and a code."""
    from .database import LedgerError

    options = {"use_uvloop": True} if importlib.util.find_spec("uvloop") else {}
    where = redact(sf.redis.url) if sf is not None else "Redis"
    try:
        try:
            anyio.run(main, backend_options=options)
        except BaseExceptionGroup as group:
            error: BaseException = group
            while isinstance(error, BaseExceptionGroup):
                error = error.exceptions[0]
            raise error from None
    except LedgerError as exc:
        raise fail(str(exc)) from None
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise fail(f"cannot reach Redis at {where}: {exc}", 1) from None
    except RedisError as exc:
        raise fail(f"Redis error: {exc}", 1) from None
    except OSError as exc:  # asyncpg and aiosqlite raise plain socket and file errors
        raise fail(f"cannot open the ledger database (DATABASE_URL / RAZORPAY_SQLITE_PATH): "
                   f"{exc}", 1) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        raise fail(f"{type(exc).__name__}: {exc}", 1) from None


def _logging(level: str) -> None:
    if not isinstance(getattr(logging, level.upper(), None), int):
        raise fail(f"unknown log level {level!r}: use debug, info, warning or error")
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def ingress(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1)] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve POST /webhooks/razorpay, /healthz and /readyz."""
    settings = _settings()
    sf = _streamflow(ctx, settings)
    import uvicorn

    from .ingress import PriorityTable
    from .server import server_options

    try:
        settings.secret()
        unknown = PriorityTable(settings.priority_routes, settings.default_priority).levels \
            - set(sf.levels)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if unknown:
        raise fail(f"RAZORPAY_PRIORITY_ROUTES / RAZORPAY_DEFAULT_PRIORITY name unknown levels "
                   f"{sorted(unknown)}; the queue's levels are {sf.levels} (STREAMFLOW_LEVELS)")
    if ctx.obj:
        os.environ["STREAMFLOW_REDIS_URL"] = ctx.obj  # read by every server process
    # The client address of X-Forwarded-For is only ever read by the access log: without it,
    # uvicorn's proxy-headers middleware would copy every webhook's headers for nothing.
    uvicorn.run("consumers.razorpay.ingress:app_from_env", factory=True, host=host, port=port,
                workers=workers, access_log=access_log, proxy_headers=access_log,
                log_level=log_level.lower(), lifespan="on", server_header=False,
                **server_options(settings))


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(help="Jobs run at once.", min=1)] = 20,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Apply queued webhooks to the ledger until SIGTERM/SIGINT."""
    settings = _settings()
    sf = _streamflow(ctx, settings)
    from .handlers import build_router
    from .ingress import configure_telemetry
    from .store import open_ledger

    _logging(log_level)
    configure_telemetry("streamflow-razorpay-worker")

    async def run() -> None:
        async with open_ledger(settings) as ledger:
            logging.getLogger("consumers.razorpay").info(
                "ledger on %s, tables %s*", ledger.dialect, ledger.prefix)
            await Worker(settings.queue, build_router(ledger, settings), settings=sf,
                         concurrency=concurrency).run()

    _run(run, sf)


@app.command()
def schema() -> None:
    """Create the ledger tables (workers also do it on start) and print the DDL."""
    settings = _settings()
    from .store import open_ledger

    async def run() -> None:
        async with open_ledger(settings) as ledger:
            for statement in ledger.schema():
                typer.echo(f"{statement};")

    _run(run)


@app.command()
def send(
    url: Annotated[str, typer.Option(help="Ingress base URL.")] = "http://127.0.0.1:8000",
    count: Annotated[int, typer.Option(help="Webhooks to send.", min=1)] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the sample generator.")] = 0,
    duplicates: Annotated[bool, typer.Option(help="Send each webhook twice.")] = True,
) -> None:
    """Send signed sample webhooks (checkout lifecycles, refunds...) to a running ingress."""
    import httpx

    from .sample import sample_webhooks

    settings = _settings()
    try:
        secret = settings.secret()
    except ValueError as exc:
        raise fail(str(exc)) from None
    hooks = sample_webhooks(count, secret, seed)
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    try:
        with httpx.Client(base_url=url, timeout=10.0) as client:
            for hook in hooks:
                for _ in range(2 if duplicates else 1):
                    response = client.post("/webhooks/razorpay", content=hook.body,
                                           headers=hook.headers())
                    key = f"{response.status_code} {response.json().get('status', '')}".strip()
                    statuses[key] = statuses.get(key, 0) + 1
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {url}: {exc}", 1) from None
    elapsed = time.perf_counter() - started
    typer.echo(f"sent {sum(statuses.values())} requests in {elapsed:.2f}s")
    for key, number in sorted(statuses.items()):
        typer.echo(f"  {key}: {number}")


@app.command()
def demo(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=8)] = 2,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the workers to finish every accepted webhook.", min=1)] = 30.0,
) -> None:
    """The whole pipeline on this machine: ingress, workers, a burst of signed webhooks, a
    summary (``make run``). Needs nothing configured: Redis is started when none answers."""
    from .demo import run_demo

    sf = _streamflow(ctx, _settings())
    raise typer.Exit(run_demo(sf, workers=workers, timeout=timeout))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point ``streamflow-razorpay``: the error policy of ``streamflow``."""
    run_main(app, PROG_NAME, argv)


if __name__ == "__main__":
    main()
