"""``streamflow dead list|retry|purge`` and ``streamflow claim``: recovering jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from ..queue import Queue
from ..reclaimer import requeue_stalled
from ._context import run_with_queue
from ._output import check_entry_ids, emit_json, parse_duration, print_table

app = typer.Typer(no_args_is_help=True, help="Dead-lettered jobs: list, retry, purge.")
QueueArg = Annotated[str, typer.Argument(help="Queue name.")]
IdsArg = Annotated[list[str] | None, typer.Argument(help="Dead entry ids (default: all).")]


@app.command("list")
def list_dead(ctx: typer.Context, queue: QueueArg,
              count: Annotated[int, typer.Option(min=1, help="Most entries to list.")] = 50,
              as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
              ) -> None:
    """Dead-lettered jobs, oldest first, with reason and error."""
    entries = run_with_queue(ctx, queue, lambda q: q.dead(count))
    if as_json:
        emit_json(entries)
        return
    if not entries:
        typer.echo("no dead-lettered jobs")
        return
    print_table(["entry", "job id", "name", "level", "reason", "failed at", "error"], [
        [e["entry_id"], e["job_id"], e["name"], e["level"], e["reason"],
         f"{datetime.fromtimestamp(e['failed_at_ms'] / 1000, tz=UTC):%Y-%m-%d %H:%M:%S}",
         e["error"][:60]] for e in entries])


@app.command("retry")
def retry(ctx: typer.Context, queue: QueueArg, ids: IdsArg = None) -> None:
    """Put dead-lettered jobs back on their level with fresh attempts."""
    check_entry_ids(ids)
    moved = run_with_queue(ctx, queue, lambda q: q.retry_dead(ids or None))
    typer.echo(f"{moved} jobs put back")


@app.command("purge")
def purge(ctx: typer.Context, queue: QueueArg, ids: IdsArg = None,
          yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete dead-lettered jobs for good."""
    if not ids and not yes:
        typer.confirm(f"Delete every dead-lettered job of {queue!r}?", abort=True)
    check_entry_ids(ids)
    removed = run_with_queue(ctx, queue, lambda q: q.purge_dead(ids or None))
    typer.echo(f"{removed} dead-lettered jobs deleted")


def claim(
    ctx: typer.Context, queue: QueueArg,
    min_idle: Annotated[str, typer.Option(help="Only entries idle this long, e.g. 60s.")],
    group: Annotated[str | None, typer.Option(help="Consumer group (default workers).")] = None,
    count: Annotated[int, typer.Option(min=1, help="Most entries per level.")] = 1000,
) -> None:
    """Put pending entries idle longer than --min-idle back on their stream for any worker."""
    idle_ms = int(parse_duration(min_idle) * 1000)

    async def go(q: Queue) -> int:
        return await requeue_stalled(q.client, q.keys, group=group or q.settings.worker.group,
                                     min_idle_ms=idle_ms, count=count)

    moved = run_with_queue(ctx, queue, go)
    typer.echo(f"{moved} stalled entries put back")
