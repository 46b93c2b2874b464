"""``streamflow worker``: run a worker for one queue."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from functools import partial
from typing import Annotated, Any

import anyio
import typer

from ..discovery import known_queues, queue_exists
from ..errors import ConfigurationError
from ..health import serve_health
from ..logs import configure_logging
from ..partitions import parse_partition_set
from ..queue import Queue
from ..router import Router
from ..settings import Isolation
from ..telemetry import configure_from_env
from ..worker import Worker
from ._context import CliError, quick, run, settings_of
from ._output import fail

log = logging.getLogger("streamflow.cli")


def register(app: typer.Typer) -> None:
    """Add the worker command to ``app``."""
    app.command("worker")(worker)


def load_target(spec: str) -> Any:
    """The object named by ``module:attr`` (the current directory is importable)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise typer.BadParameter(f"--app must look like module:attr, got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from None
    except SyntaxError as exc:
        raise typer.BadParameter(
            f"cannot import {module_name!r}: {exc.msg} ({exc.filename}, line {exc.lineno})"
        ) from None
    except SystemExit as exc:
        raise typer.BadParameter(
            f"importing {module_name!r} called sys.exit({exc.code!r}); --app must name a "
            "module that defines handlers without running anything") from None
    except Exception as exc:
        raise typer.BadParameter(
            f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    target = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise typer.BadParameter(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(target, Router) and not callable(target):
        raise typer.BadParameter(f"{spec} is neither a Router nor a callable")
    return target


def worker(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    app: Annotated[str, typer.Option("--app", help="Handlers: module:attr, a Router or a "
                                     "callable.")],
    concurrency: Annotated[int | None, typer.Option(min=1, help="Jobs at once.")] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (default workers).")]
    = None,
    consumer: Annotated[str | None, typer.Option(help="Consumer name (default host-pid).")]
    = None,
    health_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Serve /livez and /readyz on this port.")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    metrics_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Serve Prometheus /metrics on this port.")] = None,
    console_spans: Annotated[bool, typer.Option(
        "--console-spans", help="Print finished spans to stdout (local debugging).")] = False,
    isolation: Annotated[Isolation | None, typer.Option(
        help="process: run handlers in child processes (a crash fails the job, not the "
             "worker; handlers must be importable).")] = None,
    partitions: Annotated[str | None, typer.Option(
        help="Only these partitions of a partitioned queue, e.g. 0-3 or 0,2,5-7.")] = None,
) -> None:
    """Run a worker until SIGTERM/SIGINT (in-flight jobs finish within the shutdown grace)."""
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {log_level!r}")
    if metrics_port is not None and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise fail("--metrics-port needs the OpenTelemetry SDK: pip install 'streamflow[otel]'")
    target = load_target(app)
    configure_logging(level)
    metrics_text = configure_from_env(console=console_spans, prometheus=metrics_port is not None)
    if metrics_port is not None and metrics_text is None:
        raise fail("--metrics-port needs the Prometheus exporter: pip install 'streamflow[otel]'")
    try:
        chosen = parse_partition_set(partitions) if partitions is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--partitions") from None
    settings = settings_of(ctx)
    if isolation is not None:
        settings.worker.isolation = isolation
    try:
        runner = Worker(queue, target, settings=settings, concurrency=concurrency, group=group,
                        consumer=consumer, partitions=chosen)
    except (ValueError, ConfigurationError) as exc:  # a queue name that is not one...
        raise typer.BadParameter(str(exc)) from None

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for option, port, metrics in (("--health-port", health_port, None),
                                          ("--metrics-port", metrics_port, metrics_text)):
                if port is None:
                    continue
                try:
                    await tg.start(partial(serve_health, port, lambda: not runner.stopped,
                                           lambda: runner.ready, metrics=metrics))
                except OSError as exc:
                    raise CliError(f"{option} {port}: cannot listen: "
                                   f"{exc.strerror or exc}") from None
            await _warn_if_unknown(settings, queue)
            await runner.run()
            tg.cancel_scope.cancel()
        if runner.exhausted:
            raise CliError(f"stopped: {settings.worker.max_abandoned_threads} handler threads "
                           "outlived their deadline and still run; restart the worker "
                           "(worker.max_abandoned_threads)", 1)

    run(settings, main)


async def _warn_if_unknown(settings: Any, name: str) -> None:
    """A worker may start before any producer, but a typo in its queue name should show."""
    queue = Queue(name, settings=quick(settings))
    try:
        if not await queue_exists(queue.client, queue.keys):
            known = await known_queues(queue.client, settings.prefix)
            log.warning("queue %r has no keys yet (known queues: %s); waiting for jobs", name,
                        ", ".join(known) or "none")
    except Exception:
        pass
    finally:
        await queue.close()
