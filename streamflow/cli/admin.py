"""``streamflow pause | resume | drain | obliterate | repeat | demo``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..discovery import find_queue_job
from ..errors import QueueBusy
from ..queue import Queue
from ._app import echo_safe, sub_app
from ._context import CliError, Need, run_with_queue, settings_of
from ._output import emit_json, fail, parse_duration, parse_json, print_table, show, when
from .dead import claim
from .jobs import CreateOption

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


def pause(ctx: typer.Context, queue: QueueArg, create: CreateOption = False) -> None:
    """Stop workers fetching new jobs; in-flight jobs finish, adds keep working."""
    run_with_queue(ctx, queue, lambda q: q.pause(), need=Need.WRITE, create=create)
    echo_safe(f"{queue} paused")


def resume(ctx: typer.Context, queue: QueueArg, create: CreateOption = False) -> None:
    """Let workers fetch again."""
    run_with_queue(ctx, queue, lambda q: q.resume(), need=Need.WRITE, create=create)
    echo_safe(f"{queue} resumed")


def drain(ctx: typer.Context, queue: QueueArg,
          yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Remove waiting and delayed jobs; jobs in flight finish."""
    if not yes:
        typer.confirm(f"Remove every waiting and delayed job of {queue!r}?", abort=True)
    removed = run_with_queue(ctx, queue, lambda q: q.drain())
    echo_safe(f"{removed} jobs removed")


def obliterate(ctx: typer.Context, queue: QueueArg,
               force: Annotated[bool, typer.Option(help="Even with active workers.")] = False,
               yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete everything of a queue: jobs, dead letters, events, status, repeats, settings."""
    if not yes:
        typer.confirm(f"Delete every key of queue {queue!r}?", abort=True)

    async def go(q: Queue) -> int:
        try:
            return await q.obliterate(force=force)
        except QueueBusy:
            raise CliError(f"queue {queue!r} has active workers; stop them or pass --force") \
                from None

    deleted = run_with_queue(ctx, queue, go)
    echo_safe(f"{deleted} keys deleted")


repeat_app = sub_app("Repeatable jobs: add, list, remove.")


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
    create: CreateOption = False,
) -> None:
    """Add or replace a repeatable job; prints its key."""
    payload = parse_json(data)
    every_s = parse_duration(every) if every else None
    added = run_with_queue(ctx, queue, lambda q: q.repeat(
        name, payload, cron=cron, every=every_s, tz=tz, key=key, limit=limit,
        priority=priority), need=Need.WRITE, create=create)
    echo_safe(added)


@repeat_app.command("list")
def repeat_list(ctx: typer.Context, queue: QueueArg,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                ) -> None:
    """Repeatable jobs with their schedule, ticks scheduled so far and the next run."""
    repeats = run_with_queue(ctx, queue, lambda q: q.repeats())
    # the repeat state holds the latest tick *scheduled*: a future time is the next run
    rows: list[dict[str, Any]] = [{**r, "next_run_ms": r["last_tick_ms"]} for r in repeats]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        echo_safe("no repeatable jobs")
        return
    print_table(["key", "name", "schedule", "tz", "ticks", "next run (UTC)"], [
        [r["key"], r["name"], r["cron"] or f"every {r['every_ms'] / 1000:g}s", r["tz"],
         r["ticks"], when(r["next_run_ms"])] for r in rows])


@repeat_app.command("remove")
def repeat_remove(ctx: typer.Context, queue: QueueArg,
                  key: Annotated[str, typer.Argument(help="Repeat key (see repeat list).")],
                  ) -> None:
    """Stop a repeatable job."""
    removed = run_with_queue(ctx, queue, lambda q: q.remove_repeat(key))
    if not removed:
        raise typer.BadParameter(f"no repeatable job with key {key!r} (see repeat list)")
    echo_safe(f"removed {key}")


def job(ctx: typer.Context, queue: QueueArg,
        job_id: Annotated[str, typer.Argument(help="Job id, as add printed it.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Status of a job: state, attempt, progress, result or error, timestamps.

    Jobs with a caller-given id (or track=True) have a status record; for others the state
    comes from the streams, the recent events and the dead letters."""
    async def go(q: Queue) -> Any:
        return await find_queue_job(q, job_id)

    info = run_with_queue(ctx, queue, go)
    if info is None:
        raise fail(f"no job {job_id!r} in {queue!r} (unknown, or finished and its events "
                   "trimmed or expired)", 1)
    if as_json:
        emit_json(info)
        return
    for field, value in info.items():
        text = when(value, millis=True) if field.endswith("_ms") else show(value)
        echo_safe(f"{field.removesuffix('_ms'):<12} {text}")


def demo(ctx: typer.Context,
         workers: Annotated[int, typer.Option(min=1, max=8, help="Worker processes.")] = 2,
         ) -> None:
    """A real pipeline on the configured Redis (or a temporary one), printed as a table."""
    from ..demo import run_demo

    raise typer.Exit(run_demo(settings_of(ctx), workers=workers))
