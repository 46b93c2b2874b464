"""``streamflow partitions show | migrate``: the partition count of a queue, and changing it."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import QueueBusy
from ..partitions import MAX_PARTITIONS
from ..queue import Queue
from ..queue.migrate import Migration, migrate_partitions
from ._app import echo_safe, sub_app
from ._context import CliError, run_with_queue
from ._output import emit_json, print_table

app = sub_app("A queue's partitions: show the count, migrate to another.")

QueueArg = Annotated[str, typer.Argument(help="Queue name.")]


def register(root: typer.Typer) -> None:
    """Add ``streamflow partitions`` to ``root``."""
    root.add_typer(app, name="partitions")


@app.command("migrate")
def migrate(
    ctx: typer.Context, queue: QueueArg,
    to: Annotated[int, typer.Option("--to", min=1, max=MAX_PARTITIONS,
                                    help="The new partition count (1: a plain queue).")],
    group: Annotated[str | None, typer.Option(
        help="The consumer group whose position tells waiting jobs (default: the workers').")]
    = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Move waiting, delayed and held jobs (and dedup marks, key order, status records, dead
    letters) to a layout of --to partitions. Stop the workers and the producers first."""
    if not yes:
        typer.confirm(f"Move the jobs of {queue!r} to {to} partition(s)? Workers and "
                      "producers of it must be stopped", abort=True)

    async def go(q: Queue) -> Migration:
        try:
            return await migrate_partitions(q, to, group=group)
        except QueueBusy as exc:
            raise CliError(str(exc)) from None

    report = run_with_queue(ctx, queue, go)
    if as_json:
        emit_json(vars(report))
        return
    if report.before == report.after:
        echo_safe(f"{queue} already has {to} partition(s): nothing moved")
        return
    print_table(["from", "to", "waiting", "delayed", "held", "keys", "dedup marks", "status",
                 "dead"],
                [[report.before, report.after, report.waiting, report.delayed, report.held,
                  report.keys, report.dedup_marks, report.status, report.dead]])
    echo_safe(f"{queue} now has {to} partition(s); start the workers and producers with it")


@app.command("show")
def show(ctx: typer.Context, queue: QueueArg) -> None:
    """The partition count the queue recorded."""
    async def go(q: Queue) -> int:
        return q.partitions

    echo_safe(f"{queue}: {run_with_queue(ctx, queue, go)} partition(s)")
