"""``streamflow dead list|retry|purge`` and ``streamflow claim``: recovering jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from ..discovery import find_queue_dead
from ..queue import Queue
from ..reclaimer import requeue_stalled
from ._app import echo_safe, sub_app
from ._context import CliError, Need, run_with_queue
from ._output import cut, emit_json, parse_duration, print_table, when

app = sub_app("Dead-lettered jobs: list, retry, purge.")
QueueArg = Annotated[str, typer.Argument(help="Queue name.")]
IdsArg = Annotated[list[str] | None, typer.Argument(
    help="Job ids (as add printed them) or dead entry ids (default: all).")]


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
        echo_safe("no dead-lettered jobs")
        return
    print_table(["job id", "name", "level", "reason", "failed at (UTC)", "error", "entry"], [
        [e["job_id"], e["name"], e["level"], e["reason"], when(e["failed_at_ms"]),
         cut(e["error"], 60), e["entry_id"]] for e in entries])


async def _entry_ids(q: Queue, ids: list[str] | None) -> list[tuple[Queue, list[str] | None]]:
    """(queue or partition, dead entry ids) for the ids given (job ids or entry ids); the
    whole queue with None for all."""
    if not ids:
        return [(q, None)]
    found = await find_queue_dead(q, ids)
    matched = {e["job_id"] for _, e in found} | {e["entry_id"] for _, e in found}
    missing = [i for i in ids if i not in matched]
    if missing:
        raise CliError(f"no dead-lettered job {', '.join(map(repr, missing))} in {q.name!r} "
                       "(see streamflow dead list); nothing changed")
    by_handle: dict[int, tuple[Queue, list[str]]] = {}
    for handle, entry in found:
        by_handle.setdefault(id(handle), (handle, []))[1].append(entry["entry_id"])
    return [(handle, entries) for handle, entries in by_handle.values()]


@app.command("retry")
def retry(ctx: typer.Context, queue: QueueArg, ids: IdsArg = None) -> None:
    """Put dead-lettered jobs back on their level with fresh attempts."""
    async def go(q: Queue) -> int:
        return sum([await handle.retry_dead(entries)
                    for handle, entries in await _entry_ids(q, ids)])

    moved = run_with_queue(ctx, queue, go)
    echo_safe(f"{moved} jobs put back")


@app.command("purge")
def purge(ctx: typer.Context, queue: QueueArg, ids: IdsArg = None,
          yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete dead-lettered jobs for good."""
    if not ids and not yes:
        typer.confirm(f"Delete every dead-lettered job of {queue!r}?", abort=True)

    async def go(q: Queue) -> int:
        return sum([await handle.purge_dead(entries)
                    for handle, entries in await _entry_ids(q, ids)])

    removed = run_with_queue(ctx, queue, go)
    echo_safe(f"{removed} dead-lettered jobs deleted")


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

    moved = run_with_queue(ctx, queue, go, need=Need.EXISTING)
    echo_safe(f"{moved} stalled entries put back")
