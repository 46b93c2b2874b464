"""Find and steer single jobs: ``jobs``, ``find``, ``logs``, ``remove``, ``promote``,
``reschedule``, ``retry``, ``cancel``, ``clean``, ``metrics``."""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ..browse import STATES, JobView
from ..control import CLEANABLE
from ..queue import Queue
from ..stored_metrics import read_metrics
from ._context import run_with_queue
from ._output import emit_json, parse_duration, parse_json, print_table

QueueArg = Annotated[str, typer.Argument(help="Queue name.")]
IdArg = Annotated[str, typer.Argument(help="Job id, as add printed it.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ActorOpt = Annotated[str | None, typer.Option(help="Who acts (kept in the audit stream).")]
PartOpt = Annotated[int | None, typer.Option(
    "--partition", min=0, help="Partitioned queue: only this partition (default: all).")]
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="Partitioned queue: the routing key the job was added with (its partition "
    "is searched first).")]


def register(app: typer.Typer) -> None:
    """Add the job browsing and control commands to ``app``."""
    for name, command in (("jobs", jobs), ("find", find), ("logs", logs), ("remove", remove),
                          ("promote", promote), ("reschedule", reschedule), ("retry", retry),
                          ("cancel", cancel), ("clean", clean), ("metrics", metrics)):
        app.command(name)(command)


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M:%S}"


def _rows(views: list[JobView]) -> list[list[Any]]:
    parted = any(v.partition is not None for v in views)
    return [[v.id, v.name, v.state, v.level or "-", *([v.partition] if parted else []),
             v.attempt, _when(v.enqueued_ms), _when(v.due_ms or v.finished_ms or v.started_ms),
             (v.error or v.consumer or "")[:50]] for v in views]


def _headers(views: list[JobView]) -> list[str]:
    parted = ["partition"] if any(v.partition is not None for v in views) else []
    return ["id", "name", "state", "level", *parted, "attempt", "added", "due/finished",
            "error/consumer"]


def jobs(ctx: typer.Context, queue: QueueArg,
         state: Annotated[str, typer.Option(help=f"One of {', '.join(STATES)}.")] = "waiting",
         level: Annotated[str | None, typer.Option(help="Only this priority level.")] = None,
         limit: Annotated[int, typer.Option(min=1, max=10_000, help="Jobs per page.")] = 50,
         cursor: Annotated[str | None, typer.Option(help="Next page: the cursor printed.")]
         = None,
         oldest_first: Annotated[bool, typer.Option(help="Oldest first.")] = False,
         partition: PartOpt = None, as_json: JsonOpt = False) -> None:
    """One page of the jobs in a state, newest first; prints the cursor of the next page.

    On a partitioned queue the partitions are merged (or --partition lists one)."""
    if state not in STATES:
        raise typer.BadParameter(f"unknown state {state!r}; states are {', '.join(STATES)}")
    page = run_with_queue(ctx, queue, lambda q: q.jobs(
        state, level=level, cursor=cursor, limit=limit, newest_first=not oldest_first,
        partition=partition))
    if as_json:
        emit_json({"jobs": [dataclasses.asdict(v) for v in page.jobs],
                   "next_cursor": page.next_cursor})
        return
    if not page.jobs:
        typer.echo(f"no {state} jobs")
    else:
        print_table(_headers(page.jobs), _rows(page.jobs))
    if page.next_cursor:
        typer.echo(f"next page: --cursor {page.next_cursor}")


def find(ctx: typer.Context, queue: QueueArg,
         key: Annotated[str, typer.Argument(help="Business key, e.g. payment_id.")],
         value: Annotated[str, typer.Argument(help="Its value, e.g. pay_Q1x9.")],
         as_json: JsonOpt = False) -> None:
    """Every job still held that was added with this business key."""
    views = run_with_queue(ctx, queue, lambda q: q.find(key, value))
    if as_json:
        emit_json([dataclasses.asdict(v) for v in views])
        return
    if not views:
        typer.echo(f"no job with {key}={value}")
        raise typer.Exit(1)
    print_table(_headers(views), _rows(views))


def logs(ctx: typer.Context, queue: QueueArg, job_id: IdArg,
         limit: Annotated[int, typer.Option(min=1, max=10_000, help="Last lines.")] = 100,
         key: KeyOpt = None, partition: PartOpt = None, as_json: JsonOpt = False) -> None:
    """The lines the job's handler wrote with job.log()."""
    lines = run_with_queue(ctx, queue, lambda q: q.job_logs(job_id, limit=limit, key=key,
                                                            partition=partition))
    if as_json:
        emit_json(lines)
        return
    for line in lines:
        stamp, _, text = line.partition(" ")
        typer.echo(f"{_when(int(stamp)) if stamp.isdigit() else stamp}  {text}")


def remove(ctx: typer.Context, queue: QueueArg, job_id: IdArg, actor: ActorOpt = None,
           key: KeyOpt = None, partition: PartOpt = None) -> None:
    """Remove a waiting, delayed or dead job."""
    run_with_queue(ctx, queue, lambda q: q.remove(job_id, actor=actor, key=key,
                                                  partition=partition))
    typer.echo(f"removed {job_id}")


def promote(ctx: typer.Context, queue: QueueArg, job_id: IdArg,
            actor: ActorOpt = None, key: KeyOpt = None, partition: PartOpt = None) -> None:
    """Move a delayed job to its level now."""
    run_with_queue(ctx, queue, lambda q: q.promote(job_id, actor=actor, key=key,
                                                   partition=partition))
    typer.echo(f"promoted {job_id}")


def reschedule(ctx: typer.Context, queue: QueueArg, job_id: IdArg,
               delay: Annotated[str, typer.Argument(help="New delay from now, e.g. 10m.")],
               actor: ActorOpt = None, key: KeyOpt = None, partition: PartOpt = None) -> None:
    """Give a delayed job a new due time."""
    seconds = parse_duration(delay)
    run_with_queue(ctx, queue, lambda q: q.reschedule(job_id, seconds, actor=actor, key=key,
                                                      partition=partition))
    typer.echo(f"rescheduled {job_id} in {delay}")


def retry(ctx: typer.Context, queue: QueueArg, job_id: IdArg,
          data: Annotated[str | None, typer.Option(help="Run it with this JSON data instead "
                                                   "(the dead letter is kept).")] = None,
          actor: ActorOpt = None, key: KeyOpt = None, partition: PartOpt = None) -> None:
    """Put one dead job back on its level with fresh attempts."""
    async def go(q: Queue) -> str:
        if data is None:
            return await q.retry(job_id, actor=actor, key=key, partition=partition)
        return await q.retry(job_id, data=parse_json(data), actor=actor, key=key,
                             partition=partition)

    if data is not None:
        parse_json(data)
    typer.echo(f"retrying {run_with_queue(ctx, queue, go)}")


def cancel(ctx: typer.Context, queue: QueueArg, job_id: IdArg, actor: ActorOpt = None,
           key: KeyOpt = None, partition: PartOpt = None) -> None:
    """Cancel a job: a running one is stopped by its worker, a waiting one removed."""
    outcome = run_with_queue(ctx, queue, lambda q: q.cancel(job_id, actor=actor, key=key,
                                                            partition=partition))
    typer.echo(f"{outcome} {job_id}")


def clean(ctx: typer.Context, queue: QueueArg,
          state: Annotated[str, typer.Option(help=f"One of {', '.join(CLEANABLE)}.")],
          older_than: Annotated[str, typer.Option(help="Age, e.g. 7d, 12h, 0 for all.")],
          limit: Annotated[int | None, typer.Option(min=1, help="Most jobs to remove.")] = None,
          as_json: JsonOpt = False) -> None:
    """Remove completed, dead or delayed jobs older than --older-than."""
    if state not in CLEANABLE:
        raise typer.BadParameter(f"clean applies to {', '.join(CLEANABLE)}, not {state!r}")
    age = parse_duration(older_than)
    show = not as_json and sys.stderr.isatty()

    async def go(q: Queue) -> int:
        if not show:
            return await q.clean(state, older_than=age, limit=limit)
        total = limit or await _size(q, state)
        with typer.progressbar(length=max(total, 1), label=f"cleaning {state}",
                               file=sys.stderr) as bar:
            done = [0]

            def step(removed: int) -> None:
                bar.update(removed - done[0])
                done[0] = removed

            return await q.clean(state, older_than=age, limit=limit, progress=step)

    removed = run_with_queue(ctx, queue, go)
    if as_json:
        emit_json({"removed": removed})
    else:
        typer.echo(f"{removed} {state} jobs removed")


async def _size(q: Queue, state: str) -> int:
    total = 0
    for keys in q.partition_keys:
        if state == "delayed":
            total += int(await q.client.zcard(keys.delayed))
        else:
            total += int(await q.client.xlen(keys.done if state == "completed" else keys.dead))
    return total


def metrics(ctx: typer.Context, queue: QueueArg,
            since: Annotated[str, typer.Option(help="How far back, e.g. 1h.")] = "1h",
            partition: Annotated[int | None, typer.Option(
                min=0, help="Only this partition (partitioned queues sum them).")] = None,
            as_json: JsonOpt = False) -> None:
    """Completed and failed jobs per minute, from the counts stored in Redis."""
    seconds = parse_duration(since)
    counts = run_with_queue(ctx, queue, lambda q: read_metrics(
        q.client, q.keys, since=seconds, partition=partition,
        window_ms=int(q.settings.queue.metrics_window * 1000)))
    if as_json:
        emit_json([dataclasses.asdict(c) for c in counts])
        return
    rows = [[_when(c.minute_ms)[:-3], c.completed, c.failed] for c in counts
            if c.completed or c.failed]
    if not rows:
        typer.echo("no jobs finished in that time")
        return
    print_table(["minute (UTC)", "completed", "failed"], rows)
