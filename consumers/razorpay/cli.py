"""``streamflow-razorpay``: run the webhook ingress or the ledger workers, send sample webhooks.

Configuration comes from the environment (``RAZORPAY_WEBHOOK_SECRET``, ``DATABASE_URL``,
``RAZORPAY_*``, ``STREAMFLOW_*``/``REDIS_URL``); the options below override the common parts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
import httpx
import typer
import uvicorn
from pydantic import ValidationError

from streamflow import Worker

from .handlers import build_router
from .ingress import configure_telemetry
from .sample import sample_webhooks
from .settings import RazorpaySettings
from .store import LedgerError, open_ledger

app = typer.Typer(no_args_is_help=True, help="Razorpay payment pipeline on streamflow.",
                  add_completion=False)

RedisUrl = Annotated[str | None, typer.Option(
    "--redis-url", help="Redis URL (default: STREAMFLOW_REDIS_URL / REDIS_URL).")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _settings() -> RazorpaySettings:
    try:
        return RazorpaySettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"bad setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _run(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` on asyncio, with uvloop when it is installed."""
    options = {"use_uvloop": True} if importlib.util.find_spec("uvloop") else {}
    anyio.run(main, backend_options=options)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def ingress(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    redis_url: RedisUrl = None,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1)] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve POST /webhooks/razorpay, /healthz and /readyz."""
    settings = _settings()
    try:
        settings.secret()
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if redis_url:
        os.environ["STREAMFLOW_REDIS_URL"] = redis_url  # read by every server process
    uvicorn.run("consumers.razorpay.ingress:app_from_env", factory=True, host=host, port=port,
                workers=workers, access_log=access_log, log_level=log_level.lower(),
                lifespan="on", server_header=False)


@app.command()
def worker(
    redis_url: RedisUrl = None,
    concurrency: Annotated[int, typer.Option(help="Jobs run at once.", min=1)] = 20,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Apply queued webhooks to the ledger until SIGTERM/SIGINT."""
    settings = _settings()
    _logging(log_level)
    configure_telemetry("streamflow-razorpay-worker")

    async def run() -> None:
        async with open_ledger(settings) as ledger:
            logging.getLogger("consumers.razorpay").info(
                "ledger on %s, tables %s*", ledger.dialect, ledger.prefix)
            await Worker(settings.queue, build_router(ledger, settings),
                         settings=settings.streamflow(redis_url),
                         concurrency=concurrency).run()

    try:
        _run(run)
    except LedgerError as exc:
        raise _fail(str(exc)) from None


@app.command()
def schema() -> None:
    """Create the ledger tables (workers also do it on start) and print the DDL."""
    settings = _settings()

    async def run() -> None:
        async with open_ledger(settings) as ledger:
            for statement in ledger.schema():
                typer.echo(f"{statement};")

    try:
        _run(run)
    except LedgerError as exc:
        raise _fail(str(exc)) from None


@app.command()
def send(
    url: Annotated[str, typer.Option(help="Ingress base URL.")] = "http://127.0.0.1:8000",
    count: Annotated[int, typer.Option(help="Webhooks to send.", min=1)] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the sample generator.")] = 0,
    duplicates: Annotated[bool, typer.Option(help="Send each webhook twice.")] = True,
) -> None:
    """Send signed sample webhooks (checkout lifecycles, refunds...) to a running ingress."""
    settings = _settings()
    try:
        secret = settings.secret()
    except ValueError as exc:
        raise _fail(str(exc)) from None
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
        raise _fail(f"cannot reach {url}: {exc}") from None
    elapsed = time.perf_counter() - started
    typer.echo(f"sent {sum(statuses.values())} requests in {elapsed:.2f}s")
    for key, number in sorted(statuses.items()):
        typer.echo(f"  {key}: {number}")


@app.command()
def demo(
    redis_url: RedisUrl = None,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=8)] = 2,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the workers to finish every accepted webhook.", min=1)] = 30.0,
) -> None:
    """The whole pipeline on this machine: ingress, workers, a burst of signed webhooks, a
    summary (``make run``). Needs nothing configured: Redis is started when none answers."""
    from .demo import run_demo

    settings = RazorpaySettings().streamflow(redis_url)
    raise typer.Exit(run_demo(settings, workers=workers, timeout=timeout))


def main() -> None:
    """Console entry point ``streamflow-razorpay``."""
    app()


if __name__ == "__main__":
    main()
