"""The bulk add's short path: plain jobs checked and encoded in one pass into *runs*.

A run is what the add script's run record carries: jobs of one level, name and trace context
added in a row, one script argument (the encoded data) per job. ``(name, data)`` pairs and
``JobSpec``s without options become runs with no object per job besides their data; other jobs
take the full path (``Enqueuer.prepare``). ``chunks`` cuts the result into script calls of at
most ``size`` jobs.

orjson returns each payload in a buffer of at least 4 KiB from the C allocator: 20,000 of them
kept until sent are 80 MiB of fresh memory, faulted in page by page, which cost more than the
encoding itself (~1.5 us a job, measured). A copy of the bytes (``b"%b" % raw``) lands in
Python's small-object allocator and lets the buffer be reused by the next job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import NoPermissionError, OutOfMemoryError, ResponseError

from . import scripts
from .addcheck import check_name, encode_payload, non_finite, shown
from .errors import InvalidJob, QueueFull
from .protocol import RUN_RECORD

if TYPE_CHECKING:
    from .enqueue import Enqueuer, Prepared


@dataclass(slots=True)
class Run:
    """Plain jobs of one level, name and trace context, in a row: one run record."""

    level: int
    name: str
    trace: list[Any]
    """``T``, then the ``T`` trace-context stream fields every job of the run carries."""
    data: list[bytes]

    def args(self) -> list[Any]:
        """The run record: ``"r"``, level, name, T, T fields, count, then the jobs' data."""
        return [RUN_RECORD, self.level, self.name, *self.trace, len(self.data), *self.data]


def prepare_runs(enqueuer: Enqueuer, jobs: Sequence[Any], now: int,
                 trace: list[Any], traceparent: str | None,
                 tracestate: str | None) -> list[Prepared | Run]:
    """Check and encode every job of a bulk add (raises before anything is written):
    consecutive plain jobs of one level and name as ``Run``s, others ``Prepared`` (all of
    them when the queue has ``index_fields``: the data may hold business keys)."""
    from .queue.producer import JobSpec  # here: the queue package imports this module

    out: list[Prepared | Run] = []
    dumps = orjson.dumps
    max_bytes = enqueuer.settings.queue.max_payload_bytes
    default = enqueuer.level_index(None)
    runs = not enqueuer.settings.queue.index_fields
    run_name: Any = _NO_RUN  # the name and level of the run the next plain job may join
    run_level = -1
    append: Any = None
    for job in jobs:
        kind = type(job)
        if kind is tuple or kind is list:
            try:
                name, data = job
            except ValueError:
                raise InvalidJob(f"a job of add_bulk is a JobSpec or a (name, data) pair, not "
                                 f"{shown(job)}") from None
            if not runs:
                out.append(enqueuer.prepare(JobSpec(name, data), now, traceparent, tracestate))
                continue
            level = default
        elif kind is JobSpec and runs and _plain(job):
            name, data = job.name, job.data
            level = default if job.priority is None else enqueuer.level_index(job.priority)
        elif isinstance(job, JobSpec):
            out.append(enqueuer.prepare(job, now, traceparent, tracestate))
            run_name = _NO_RUN
            continue
        else:
            raise InvalidJob(f"a job of add_bulk is a JobSpec or a (name, data) pair, not "
                             f"{shown(job)}")
        try:
            raw = dumps(data)
        except TypeError:
            raw = encode_payload(data, max_bytes)  # raises its clear error
        if len(raw) > max_bytes or (b"null" in raw and non_finite(data)):
            encode_payload(data, max_bytes)  # too large, or a NaN: raises its clear error
        if name is not run_name or level != run_level:
            if type(name) is not str or name != run_name or level != run_level:
                run = Run(level, check_name(name), trace, [])
                out.append(run)
                append = run.data.append
                run_level = level
            run_name = name
        append(b"%b" % raw)
    return out


_NO_RUN = object()


def _plain(spec: Any) -> bool:
    """Whether a ``JobSpec`` has nothing but a name, data and priority."""
    return (spec.job_id is None and spec.delay is None and spec.attempts is None
            and spec.backoff is None and spec.timeout is None and spec.track is False
            and spec.keep_result is None and spec.index is None)


def chunks(jobs: Sequence[Prepared | Run], size: int) -> Iterator[list[Prepared | Run]]:
    """``jobs`` cut into script calls of at most ``size`` jobs (a run may be split)."""
    chunk: list[Prepared | Run] = []
    room = size
    for job in jobs:
        if not isinstance(job, Run):
            chunk.append(job)
            room -= 1
        else:
            data, start = job.data, 0
            while len(data) - start >= room:
                chunk.append(job if start == 0 and room >= len(data) else
                             Run(job.level, job.name, job.trace, data[start:start + room]))
                start += room
                yield chunk
                chunk, room = [], size
            if start < len(data):
                chunk.append(job if start == 0 else
                             Run(job.level, job.name, job.trace, data[start:]))
                room -= len(data) - start
        if room == 0:
            yield chunk
            chunk, room = [], size
    if chunk:
        yield chunk


def direct(client: Any) -> bool:
    """Whether ``client`` hands out single connections (not a Cluster client)."""
    return hasattr(getattr(client, "connection_pool", None), "get_connection")


async def send_in_turn(client: Any, command: Callable[[int], scripts.Command],
                       count: int) -> list[Any] | None:
    """The replies of ``command(0)`` .. ``command(count - 1)`` (errors in place), each
    written as soon as it is built, on one connection, then read: Redis runs a chunk while the
    next is packed. None for a Cluster client, or a first script call by a user who may not
    load the moves: the caller sends them as a pipeline.

    After a connection error the connection's retry policy sends them all again (safe: every
    add call carries its token). Calls that met NOSCRIPT ("Function not found") are sent
    again once the moves are loaded (nothing of them ran)."""
    if not direct(client):
        return None
    if not scripts.settled(client):  # the client's first script call
        try:
            await scripts.load_scripts(client)  # settles FCALL or EVALSHA
        except NoPermissionError:  # EVALSHA without SCRIPT LOAD: the pipeline settles it
            return None
    replies = await _write_then_read(client, command, list(range(count)))
    gone = [i for i, reply in enumerate(replies) if scripts.gone(reply)]
    if gone:
        await scripts.load_scripts(client)
        for i, reply in zip(gone, await _write_then_read(client, command, gone), strict=True):
            replies[i] = reply
    return replies


async def _write_then_read(client: Any, command: Callable[[int], scripts.Command],
                           indexes: list[int]) -> list[Any]:
    pool = client.connection_pool
    connection = await pool.get_connection()

    async def attempt() -> list[Any]:
        for n, i in enumerate(indexes):
            built = command(i)
            sent = scripts.as_sent(client, built) or built
            await connection.send_packed_command(connection.pack_command(*sent),
                                                 check_health=n == 0)
        replies = []
        for _ in indexes:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:  # read in full: the connection stays in step
                replies.append(exc)
        return replies

    async def failed(error: Exception) -> None:
        await connection.disconnect()

    try:
        return list(await connection.retry.call_with_retry(attempt, failed))
    finally:
        await pool.release(connection)


def job_ids(replies: list[Any]) -> list[str | None]:
    """The ids of the add calls' replies, in order (None: a duplicate); ``QueueFull`` when
    Redis was full, or the first other error reply raised."""
    for reply in replies:
        if isinstance(reply, OutOfMemoryError):
            raise QueueFull("Redis is full (maxmemory reached) and refused the add; retry "
                            "later" + (" (chunks of 1,000 before the refused one were added)"
                                       if len(replies) > 1 else "")) from reply
        if isinstance(reply, Exception):
            raise reply
    ids: list[str | None] = []
    for reply in replies:
        try:
            ids += list(map(bytes.decode, reply))  # no duplicate refused: all bytes
        except TypeError:
            ids += [item.decode() if isinstance(item, bytes) else None for item in reply]
    return ids
