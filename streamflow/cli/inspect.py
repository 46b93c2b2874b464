"""``streamflow queues | stats | pending | events``: read-only views of queues."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from ..discovery import known_queues, pending_job_ids
from ..events import (
    QueueEvent,
    QueueEvents,
    events_layout,
    merge_events,
    parse_cursor,
    parse_event,
)
from ..inspect import read_counts, read_pending, read_pending_summary
from ..keys import QueueKeys
from ..queue import Queue
from ..retention import live_workers
from ._app import echo_safe
from ._context import Need, check_queue, queue_of, quick, run, run_with_queue, settings_of
from ._output import emit_json, parse_duration, print_table, when

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
GroupOption = Annotated[str | None, typer.Option(help="Consumer group (default workers).")]


def register(app: typer.Typer) -> None:
    """Add the read commands to ``app``."""
    app.command("queues")(queues)
    app.command("stats")(stats)
    app.command("pending")(pending)
    app.command("events")(events)


async def _live(q: Queue) -> int:
    stale_ms = int(q.settings.worker.heartbeat_interval * 3 * 1000)
    return len(await live_workers(q.client, q.keys, stale_after_ms=stale_ms))


def queues(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The queues under the key prefix, with waiting, pending, delayed, dead and live workers."""
    settings = quick(settings_of(ctx))

    async def go() -> list[dict[str, Any]]:
        probe = Queue("-", settings=settings)
        try:
            names = await known_queues(probe.client, settings.prefix)
            out = []
            for name in names:
                keys = QueueKeys(name, settings.prefix, tuple(settings.levels))
                counts = await read_counts(probe.client, keys, settings.worker.group)
                stale_ms = int(settings.worker.heartbeat_interval * 3 * 1000)
                workers = len(await live_workers(probe.client, keys, stale_after_ms=stale_ms))
                out.append({"queue": name, "waiting": counts["waiting"],
                            "pending": counts["pending"], "delayed": counts["delayed"],
                            "dead": counts["dead"], "workers": workers,
                            "paused": counts["paused"]})
            return out
        finally:
            await probe.close()

    rows = run(settings, go)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        echo_safe(f"no queues under prefix {settings.prefix!r}")
        return
    print_table(["queue", "waiting", "pending", "delayed", "dead", "workers", "paused"],
                [[r["queue"], r["waiting"], r["pending"], r["delayed"], r["dead"], r["workers"],
                  "yes" if r["paused"] else "no"] for r in rows])


def stats(ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")],
          group: GroupOption = None, as_json: JsonOption = False) -> None:
    """Waiting per level, pending, delayed, held (behind their key), dead, groups, workers."""
    async def go(q: Queue) -> Any:
        counts: dict[str, Any] = dict(await q.counts(group))
        counts["group_consumers"] = counts["consumers"]  # includes consumers that exited
        counts["consumers"] = await _live(q)
        return counts

    counts = run_with_queue(ctx, queue, go)
    if as_json:
        emit_json(counts)
        return
    rows: list[list[Any]] = [[level, c["waiting"], c["pending"], c["length"]]
                             for level, c in counts["levels"].items()]
    print_table(["level", "waiting (lag)", "pending", "stream length"], rows)
    echo_safe("")
    print_table(["delayed", "held", "dead", "live workers", "groups", "paused"],
                [[counts["delayed"], counts["held"], counts["dead"], counts["consumers"],
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
    """XPENDING summary per level and consumer, then entries with job id, idle time and
    deliveries."""
    idle_ms = int(parse_duration(min_idle) * 1000) if min_idle else 0

    async def go(q: Queue) -> tuple[dict[str, Any], list[Any]]:
        g = group or q.settings.worker.group
        summary: dict[str, Any] = {}
        entries: list[Any] = []
        for i, keys in enumerate(q.partition_keys):  # "<partition>:<level>" when partitioned
            label = "" if q.partitions == 1 else f"{i}:"
            part = await read_pending_summary(q.client, keys, g)
            summary.update({label + level: info for level, info in part.items()})
            found = await read_pending(q.client, keys, g, consumer=consumer,
                                       min_idle_ms=idle_ms, count=count)
            job_ids = await pending_job_ids(q.client, keys, found)
            entries += [{**e, "level": label + e["level"], "job_id": j}
                        for e, j in zip(found, job_ids, strict=True)]
        return summary, entries[:count]

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
        echo_safe("")
        print_table(["job id", "level", "entry", "consumer", "idle", "deliveries"],
                    [[e["job_id"], e["level"], e["entry_id"], e["consumer"],
                      f"{e['idle_ms'] / 1000:.1f}s", e["deliveries"]] for e in entries])


def events(
    ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")],
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print the last --count events, oldest first, then new ones as "
        "they come.")] = False,
    since: Annotated[str | None, typer.Option(
        help="Events after this event id, oldest first (0 = the oldest kept); on a "
        "partitioned queue one id for every partition or the cursor --json prints.")] = None,
    count: Annotated[int, typer.Option(min=1, help="Most events to print (before --follow).")]
    = 20,
    oldest_first: Annotated[bool, typer.Option(
        "--oldest-first", help="Print the last --count events oldest first.")] = False,
    partition: Annotated[int | None, typer.Option(
        min=0, help="Only this partition's events (partitioned queues).")] = None,
    as_json: JsonOption = False,
) -> None:
    """The queue's lifecycle events (added, completed, retrying, dead...), newest first; on a
    partitioned queue those of every partition merged by time."""
    if since is not None:
        try:
            parse_cursor(since, len(since.split(",")))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    q = queue_of(ctx, queue)

    async def go() -> None:
        try:
            await check_queue(q, Need.EXISTING)
            reader = QueueEvents(queue, settings=q.settings, client=q.client,
                                 since=since or "0", partition=partition)
            streams = await events_layout(q.client, q.keys, partition=partition)
            cursor = len(streams) > 1 and as_json
            if since is None:
                latest, newest = await _latest(q, streams, count)
                chronological = follow or oldest_first
                for event in reversed(latest) if chronological else latest:
                    _print_event(event, as_json)
                if not follow:
                    return
                reader.last_id = newest
            async with reader:
                if not follow:
                    positions = reader.last_id.split(",")
                    for event in await reader.read(count=count):
                        positions[[p for p, _ in streams].index(event.partition)] = event.id
                        _print_event(event, as_json, ",".join(positions) if cursor else None)
                    return
                async for event in reader:
                    _print_event(event, as_json, reader.last_id if cursor else None)
        finally:
            await q.close()

    try:
        run(q.settings, go)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


async def _latest(q: Queue, streams: list[tuple[int | None, str]],
                  count: int) -> tuple[list[QueueEvent], str]:
    """The newest ``count`` events of ``streams``, newest first, and the cursor after every
    stream's newest event (where ``--follow`` goes on)."""
    pipe = q.client.pipeline(transaction=False)
    for _, stream in streams:
        pipe.xrevrange(stream, count=count)
    batches = [[parse_event(i, f, p) for i, f in reversed(rows)]
               for (p, _), rows in zip(streams, await pipe.execute(), strict=True)]
    cursor = ",".join(batch[-1].id if batch else "0-0" for batch in batches)
    return merge_events(batches)[::-1][:count], cursor


FIELD_NAMES = {"i": "job", "n": "name", "a": "attempt", "ms": "took_ms", "err": "error",
               "due": "due", "p": "progress", "from": "from", "reason": "reason",
               "deliveries": "deliveries"}
"""Event fields as stored (short, written by the Lua scripts) -> as printed."""


def event_record(event: QueueEvent) -> dict[str, Any]:
    """An event with full field names and readable times, as printed by ``events``."""
    at_ms = int(event.id.partition("-")[0])
    record: dict[str, Any] = {"id": event.id, "time": when(at_ms, millis=True),
                              "event": event.name}
    if event.partition is not None:
        record["partition"] = event.partition
    for key, value in event.fields.items():
        name = FIELD_NAMES.get(key, key)
        if name == "due" and value.isdigit():
            record[name] = when(int(value), millis=True)
        elif name in ("attempt", "took_ms", "deliveries") and value.isdigit():
            record[name] = int(value)
        else:
            record[name] = value
    return record


def _print_event(event: QueueEvent, as_json: bool, cursor: str | None = None) -> None:
    record = event_record(event)
    if cursor is not None:  # a partitioned queue: --since this resumes every partition
        record["cursor"] = cursor
    if as_json:
        echo_safe(orjson.dumps(record))
        return
    details = "  ".join(f"{k}={v}" for k, v in record.items()
                        if k not in ("id", "time", "event", "cursor"))
    echo_safe(f"{record['time']}  {event.name:<12} {details}".rstrip())
