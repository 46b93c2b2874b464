"""``streamflow load-functions``: load the Lua moves as a Redis Functions library."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.exceptions import ResponseError

from .. import scripts
from ..connection import create_client
from ._context import quick, run, settings_of
from ._output import fail


def register(app: typer.Typer) -> None:
    """Add the load-functions command to ``app``."""
    app.command("load-functions")(load_functions)


def load_functions(
    ctx: typer.Context,
    prune: Annotated[bool, typer.Option(
        help="Also delete the libraries of other streamflow versions (once none of their "
             "workers or producers runs).")] = False,
) -> None:
    """Load this version's functions library (Redis >= 7), as a user granted FUNCTION.

    Producers and workers may call the library's functions (FCALL) but not load any: run
    this once per streamflow version, before its workers and producers start.
    """
    settings = quick(settings_of(ctx))

    async def main() -> tuple[bool, list[str]]:
        client = create_client(settings.redis, max_connections=2)
        try:
            loaded = await scripts.load_functions(client)
            return loaded, (await scripts.prune_functions(client) if prune else [])
        except ResponseError as exc:
            if str(exc).lower().startswith("unknown command"):
                raise fail("this Redis has no Functions (Redis < 7): streamflow calls its "
                           "scripts by EVALSHA there, loaded by the workers", 1) from None
            raise
        finally:
            await client.aclose()

    loaded, pruned = run(settings, main)
    name = scripts.LIBRARY.name
    typer.echo(f"{name} loaded" if loaded else f"{name} already loaded")
    for library in pruned:
        typer.echo(f"{library} deleted")
