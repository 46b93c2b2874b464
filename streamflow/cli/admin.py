"""``streamflow pause | resume | drain | obliterate | repeat | demo``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from ..queue import Queue
from ._context import run_with_queue, settings_of
from ._output import emit_json, parse_duration, parse_json, print_table
from .dead import claim

QueueArg = Annotated[str, typer.Argument(help="Queue name.")]


def register(app: typer.Typer) -> None:
    """Add the admin commands to ``app``."""
    app.command("claim")(claim)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("drain")(drain)
    app.command("job")(job)
    app.command("obliterate")(obliterate)
    app.command("demo")(demo)


def pause(ctx: typer.Context, queue: QueueArg) -> None:
    """Stop workers fetching new jobs; in-flight jobs finish, adds keep working."""
    run_with_queue(ctx, queue, lambda q: q.pause())
    typer.echo(f"{queue} paused")


def resume(ctx: typer.Context, queue: QueueArg) -> None:
    """Let workers fetch again."""
    run_with_queue(ctx, queue, lambda q: q.resume())
    typer.echo(f"{queue} resumed")


def drain(ctx: typer.Context, queue: QueueArg,
          yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Remove waiting and delayed jobs; jobs in flight finish."""
    if not yes:
        typer.confirm(f"Remove every waiting and delayed job of {queue!r}?", abort=True)
    removed = run_with_queue(ctx, queue, lambda q: q.drain())
    typer.echo(f"{removed} jobs removed")


def obliterate(ctx: typer.Context, queue: QueueArg,
               force: Annotated[bool, typer.Option(help="Even with active workers.")] = False,
               yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete everything of a queue: jobs, dead letters, events, status, repeats, settings."""
    if not yes:
        typer.confirm(f"Delete every key of queue {queue!r}?", abort=True)
    deleted = run_with_queue(ctx, queue, lambda q: q.obliterate(force=force))
    typer.echo(f"{deleted} keys deleted")


repeat_app = typer.Typer(no_args_is_help=True, help="Repeatable jobs: add, list, remove.")


@repeat_app.command("add")
def repeat_add(
    ctx: typer.Context, queue: QueueArg,
    name: Annotated[str, typer.Argument(help="Job name.")],
    cron: Annotated[str | None, typer.Option(help="Cron expression, e.g. '0 9 * * *'.")] = None,
    every: Annotated[str | None, typer.Option(help="Fixed interval, e.g. 30s, 5m.")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of the cron expression.")] = "UTC",
    data: Annotated[str, typer.Option(help="Job data as JSON.")] = "null",
    key: Annotated[str | None, typer.Option(help="Repeat key (default name + schedule).")]
    = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many ticks.")]
    = None,
    priority: Annotated[str | None, typer.Option(help="Priority level of the ticks.")] = None,
) -> None:
    """Add or replace a repeatable job; prints its key."""
    payload = parse_json(data)
    every_s = parse_duration(every) if every else None
    added = run_with_queue(ctx, queue, lambda q: q.repeat(
        name, payload, cron=cron, every=every_s, tz=tz, key=key, limit=limit,
        priority=priority))
    typer.echo(added)


@repeat_app.command("list")
def repeat_list(ctx: typer.Context, queue: QueueArg,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                ) -> None:
    """Repeatable jobs with their schedule and last tick."""
    repeats = run_with_queue(ctx, queue, lambda q: q.repeats())
    if as_json:
        emit_json(repeats)
        return
    if not repeats:
        typer.echo("no repeatable jobs")
        return
    print_table(["key", "name", "schedule", "tz", "ticks", "last tick (UTC)"], [
        [r["key"], r["name"], r["cron"] or f"every {r['every_ms']} ms", r["tz"], r["ticks"],
         f"{datetime.fromtimestamp(r['last_tick_ms'] / 1000, tz=UTC):%Y-%m-%d %H:%M:%S}"
         if r["last_tick_ms"] else "-"] for r in repeats])


@repeat_app.command("remove")
def repeat_remove(ctx: typer.Context, queue: QueueArg,
                  key: Annotated[str, typer.Argument(help="Repeat key (see repeat list).")],
                  ) -> None:
    """Stop a repeatable job."""
    removed = run_with_queue(ctx, queue, lambda q: q.remove_repeat(key))
    if not removed:
        raise typer.BadParameter(f"no repeatable job with key {key!r}")
    typer.echo(f"removed {key}")


def job(ctx: typer.Context, queue: QueueArg,
        job_id: Annotated[str, typer.Argument(help="Job id (caller-given or tracked).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Status of a job: state, attempt, progress, result or error, timestamps."""
    async def go(q: Queue) -> object:
        return await q.get_job(job_id)

    info = run_with_queue(ctx, queue, go)
    if info is None:
        typer.echo(f"streamflow: error: no status for job {job_id!r} (untracked, unknown "
                   "or expired)", err=True)
        raise typer.Exit(1)
    if as_json:
        emit_json(info)
        return
    assert isinstance(info, dict)
    for field, value in info.items():
        if field.endswith("_ms") and value:
            value = f"{datetime.fromtimestamp(value / 1000, tz=UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3]
        typer.echo(f"{field:<12} {value if value is not None else '-'}")


def demo(ctx: typer.Context,
         workers: Annotated[int, typer.Option(min=1, max=8, help="Worker processes.")] = 2,
         ) -> None:
    """A real pipeline on the configured Redis (or a temporary one), printed as a table."""
    from ..demo import run_demo

    raise typer.Exit(run_demo(settings_of(ctx), workers=workers))
