"""``streamflow add``: enqueue a job from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from ..backoff import Backoff
from ..codec import encode_data
from ..errors import StreamflowError
from ..queue import Queue
from ._app import echo_safe
from ._context import Need, queue_of, run_with_queue
from ._output import fail, parse_duration, parse_json

CreateOption = Annotated[bool, typer.Option(
    "--create", help="Create the queue if it does not exist yet (a typo guard).")]


def register(app: typer.Typer) -> None:
    """Add the job commands to ``app``."""
    app.command("add")(add)


def add(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    name: Annotated[str, typer.Argument(help="Job name (the handler to run).")],
    data: Annotated[str, typer.Option(help="Job data as JSON.")] = "null",
    priority: Annotated[str | None, typer.Option(help="Priority level, e.g. high.")] = None,
    delay: Annotated[str | None, typer.Option(help="Run after this long, e.g. 5s, 2m.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Idempotency id: a duplicate is refused.")]
    = None,
    attempts: Annotated[int | None, typer.Option(min=1, help="Attempts before dead letters.")]
    = None,
    backoff: Annotated[str | None, typer.Option(
        help="Retry backoff, KIND:SECONDS with KIND fixed, exponential or jitter.")] = None,
    create: CreateOption = False,
) -> None:
    """Add one job; prints its id (nothing, and a note on stderr, for a refused duplicate)."""
    payload = parse_json(data)
    delay_s = parse_duration(delay) if delay else None
    backoff_value = _parse_backoff(backoff) if backoff else None
    if not name or job_id == "":
        raise fail("a job needs a non-empty name" if not name else
                   "--job-id must be a non-empty string", 2)
    probe = queue_of(ctx, queue)
    try:  # refused before Redis is asked anything
        probe.level_index(priority)
        encode_data(payload, probe.settings.queue.max_payload_bytes)
    except StreamflowError as exc:
        raise fail(str(exc), 2) from None

    async def go(q: Queue) -> str | None:
        return await q.add(name, payload, priority=priority, delay=delay_s, job_id=job_id,
                           attempts=attempts, backoff=backoff_value)

    job = run_with_queue(ctx, queue, go, need=Need.WRITE, create=create)
    if job is None:
        typer.echo(f"duplicate: job id {job_id!r} was already added; nothing written", err=True)
    else:
        echo_safe(job)


def _parse_backoff(text: str) -> Backoff:
    kind, _, seconds = text.partition(":")
    try:
        return Backoff(kind, parse_duration(seconds or "2s"))  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(f"bad backoff {text!r}: {exc}") from None
