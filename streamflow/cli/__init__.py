"""The ``streamflow`` command: root app, shared options, and error handling."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from ..settings import StreamflowSettings
from . import admin, dead, inspect, jobs
from . import worker as worker_cli

app = typer.Typer(
    name="streamflow", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    help="Job and event pipeline on Redis Streams consumer groups.",
)


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", envvar=["STREAMFLOW_REDIS_URL", "REDIS_URL"],
        help="Redis URL (redis://, rediss://, redis+sentinel://); default from settings.",
        show_envvar=False)] = None,
    prefix: Annotated[str | None, typer.Option(help="Key prefix (default sf).")] = None,
) -> None:
    """Job and event pipeline on Redis Streams consumer groups."""
    try:
        settings = StreamflowSettings()
    except ValidationError as exc:
        raise typer.BadParameter(f"bad settings: {exc.errors()[0]['msg']}") from None
    if redis_url:
        settings.redis.url = redis_url
    if prefix:
        settings.prefix = prefix
    ctx.obj = settings


app.add_typer(dead.app, name="dead")
app.add_typer(admin.repeat_app, name="repeat")
for module in (worker_cli, jobs, inspect, admin):
    module.register(app)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: usage errors are one line on stderr with exit code 2, never a traceback."""
    try:
        result = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("streamflow: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.TyperException as exc:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if format_message else str(exc)
        typer.echo(f"streamflow: error: {message}", err=True)
        sys.exit(2)
    if isinstance(result, int):
        sys.exit(result)
    return result
