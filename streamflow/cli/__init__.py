"""The ``streamflow`` command: root app, global options, and the error policy of ``_app``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer

from .. import __version__
from ._app import RootGroup, new_app, run_main
from ._context import load_settings

app = new_app(
    "streamflow",
    "Job and event pipeline on Redis Streams consumer groups.\n\n"
    "Global options (--redis-url, --prefix) may come before or after the command; "
    "read commands take --json. Bad input: one line on stderr, exit code 2; Redis "
    "unreachable: exit code 1.",
    RootGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamflow {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", envvar=["STREAMFLOW_REDIS_URL", "REDIS_URL"],
        help="Redis URL (redis://, rediss://, redis+sentinel://); default from "
             "STREAMFLOW_REDIS_URL / REDIS_URL, else redis://127.0.0.1:6379/0.",
        show_envvar=False)] = None,
    prefix: Annotated[str | None, typer.Option(help="Key prefix (default sf).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")]
    = False,
) -> None:
    """Job and event pipeline on Redis Streams consumer groups."""
    ctx.obj = load_settings(redis_url, prefix)


def _register() -> None:
    from . import admin, dashboard, dead, functions, inspect, jobs, partitions, steer
    from . import worker as worker_cli

    app.add_typer(dead.app, name="dead")
    app.add_typer(admin.repeat_app, name="repeat")
    for module in (worker_cli, jobs, inspect, admin, functions, dashboard, steer, partitions):
        module.register(app)


_register()


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: errors are one line on stderr with an exit code, never a traceback."""
    run_main(app, "streamflow", argv)
