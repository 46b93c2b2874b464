"""``streamflow pause | resume | demo | bench``."""

from __future__ import annotations

from typing import Annotated

import typer

from ._context import run_with_queue, settings_of
from .dead import claim

QueueArg = Annotated[str, typer.Argument(help="Queue name.")]


def register(app: typer.Typer) -> None:
    """Add the admin commands to ``app``."""
    app.command("claim")(claim)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("demo")(demo)


def pause(ctx: typer.Context, queue: QueueArg) -> None:
    """Stop workers fetching new jobs; in-flight jobs finish, adds keep working."""
    run_with_queue(ctx, queue, lambda q: q.pause())
    typer.echo(f"{queue} paused")


def resume(ctx: typer.Context, queue: QueueArg) -> None:
    """Let workers fetch again."""
    run_with_queue(ctx, queue, lambda q: q.resume())
    typer.echo(f"{queue} resumed")


def demo(ctx: typer.Context,
         workers: Annotated[int, typer.Option(min=1, max=8, help="Worker processes.")] = 2,
         ) -> None:
    """A real pipeline on the configured Redis (or a temporary one), printed as a table."""
    from ..demo import run_demo

    raise typer.Exit(run_demo(settings_of(ctx), workers=workers))
