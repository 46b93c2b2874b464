"""``streamflow stats | pending | events``: read-only views of a queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer

from ..events import QueueEvents
from ..inspect import read_pending, read_pending_summary
from ..queue import Queue
from ._context import queue_of, run, run_with_queue, settings_of
from ._output import check_entry_ids, emit_json, parse_duration, print_table

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
GroupOption = Annotated[str | None, typer.Option(help="Consumer group (default workers).")]


def register(app: typer.Typer) -> None:
    """Add the read commands to ``app``."""
    app.command("stats")(stats)
    app.command("pending")(pending)
    app.command("events")(events)


def stats(ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")],
          group: GroupOption = None, as_json: JsonOption = False) -> None:
    """Waiting per level, pending, delayed, dead, groups, consumers and lag."""
    counts = run_with_queue(ctx, queue, lambda q: q.counts(group))
    if as_json:
        emit_json(counts)
        return
    rows: list[list[Any]] = [[level, c["waiting"], c["pending"], c["length"]]
                             for level, c in counts["levels"].items()]
    print_table(["level", "waiting (lag)", "pending", "stream length"], rows)
    typer.echo("")
    print_table(["delayed", "dead", "consumers", "groups", "paused"],
                [[counts["delayed"], counts["dead"], counts["consumers"],
                  ",".join(counts["groups"]) or "-", "yes" if counts["paused"] else "no"]])


def pending(
    ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")],
    group: GroupOption = None,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's entries.")] = None,
    min_idle: Annotated[str | None, typer.Option(help="Only entries idle this long, e.g. 30s.")]
    = None,
    count: Annotated[int, typer.Option(min=1, help="Most entries to list.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """XPENDING summary per level and consumer, then entries with idle time and deliveries."""
    idle_ms = int(parse_duration(min_idle) * 1000) if min_idle else 0

    async def go(q: Queue) -> tuple[dict[str, Any], list[Any]]:
        g = group or q.settings.worker.group
        summary = await read_pending_summary(q.client, q.keys, g)
        entries = await read_pending(q.client, q.keys, g, consumer=consumer,
                                     min_idle_ms=idle_ms, count=count)
        return summary, list(entries)

    summary, entries = run_with_queue(ctx, queue, go)
    if as_json:
        emit_json({"summary": summary, "entries": entries})
        return
    rows = []
    for level, info in summary.items():
        per_consumer = ", ".join(f"{name}={n}" for name, n in info["consumers"].items())
        rows.append([level, info["pending"], info["min"] or "-", info["max"] or "-",
                     per_consumer or "-"])
    print_table(["level", "pending", "oldest", "newest", "per consumer"], rows)
    if entries:
        typer.echo("")
        print_table(["level", "entry", "consumer", "idle", "deliveries"],
                    [[e["level"], e["entry_id"], e["consumer"], f"{e['idle_ms'] / 1000:.1f}s",
                      e["deliveries"]] for e in entries])


def events(
    ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")]
    = False,
    since: Annotated[str, typer.Option(help="Start after this event id (0 = the oldest kept).")]
    = "0",
    count: Annotated[int, typer.Option(min=1, help="Most events to print without --follow.")]
    = 100,
    as_json: JsonOption = False,
) -> None:
    """The queue's lifecycle events (added, completed, retrying, dead, ...)."""
    check_entry_ids([since])
    settings = queue_of(ctx, queue).settings

    async def go() -> None:
        async with QueueEvents(queue, settings=settings, since=since) as reader:
            if not follow:
                for event in await reader.read(count=count):
                    _print_event(event.id, event.name, event.fields, as_json)
                return
            async for event in reader:
                _print_event(event.id, event.name, event.fields, as_json)

    try:
        run(settings_of(ctx), go)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _print_event(event_id: str, name: str, fields: dict[str, str], as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps({"id": event_id, "event": name, "fields": fields}))
        return
    when = datetime.fromtimestamp(int(event_id.split("-")[0]) / 1000, tz=UTC)
    details = " ".join(f"{k}={v}" for k, v in fields.items())
    typer.echo(f"{when:%H:%M:%S.%f}"[:-3] + f"  {name:<10} {details}")
