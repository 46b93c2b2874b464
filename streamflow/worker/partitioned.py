"""A worker over a partitioned queue: one partition worker per partition consumed.

Each partition worker is a whole worker on that partition's keys (fetcher, acker, promoter,
reclaimer, heartbeat, janitor), so every guarantee of a queue holds per partition. They share
the front worker's client and its concurrency (`SharedCapacity`): a fetch takes at most a fair
share of the free slots and freed slots wake the partitions in rotating order, so no partition
starves while another has a backlog.

Priority is strict within a partition. Across partitions each fetch takes the partition's
highest level first, so a ``high`` job waits at most behind the jobs other partitions already
fetched (at most ``concurrency``), never behind another partition's backlog of lower levels.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import anyio

from ..connection import create_client
from ..errors import ConfigurationError
from ..inspect import read_counts
from ..metrics import metrics_for
from ..queue.partitioned import check_partition_count, stored_partitions
from .dispatch import SharedCapacity

if TYPE_CHECKING:
    from .front import Worker

log = logging.getLogger("streamflow.worker")

GAUGE_INTERVAL_S = 5.0


async def consumed_partitions(worker: Worker) -> tuple[int, tuple[int, ...]] | None:
    """The queue's partition count and the partitions ``worker`` consumes; None for a queue
    of one partition.

    The count is the one the queue recorded (`Queue` records it), else the configured one
    (``queue.partitions``), which is then recorded, or refused when it differs from the
    count of a queue that holds jobs.
    """
    configured = worker.settings.queue.partitions
    stored = await stored_partitions(worker.client, worker.keys)
    if configured > 1 and configured != stored:
        await check_partition_count(worker.client, worker.keys, configured, worker.group)
        count = configured
    else:
        count = stored
    if count == 1:
        if worker.partitions not in (None, (0,)):
            raise ConfigurationError(f"queue {worker.queue!r} is not partitioned: it has no "
                                     f"partitions {worker.partitions}")
        return None
    chosen = worker.partitions or tuple(range(count))
    outside = [p for p in chosen if not 0 <= p < count]
    if outside:
        raise ConfigurationError(f"partition {outside[0]} does not exist: queue "
                                 f"{worker.queue!r} has {count} (0-{count - 1})")
    return count, tuple(chosen)


async def run_partitions(front: Worker, count: int, chosen: tuple[int, ...], *,
                         handle_signals: bool) -> None:
    """Run one partition worker per partition in ``chosen`` until ``front`` stops."""
    if front._own_client and front._client is not None:  # room for every partition's loops
        await front._client.aclose()
        front._client = create_client(
            front.settings.redis, max_connections=front.concurrency + 16 * len(chosen),
            client_name=f"streamflow-worker-{front.consumer}")
    shared = SharedCapacity(front.concurrency)
    worker_class = type(front)
    front.parts = [
        worker_class(front.queue, front.router, settings=front.settings, client=front.client,
                     concurrency=front.concurrency, group=front.group,
                     consumer=front.consumer, partition=partition)
        for partition in chosen]
    for part in front.parts:
        shared.join(part.dispatcher)
    async with anyio.create_task_group() as background:
        if handle_signals and threading.current_thread() is threading.main_thread():
            await background.start(front._watch_signals)
        background.start_soon(_stop_parts, front)
        background.start_soon(_refresh_gauges, front, count)
        async with anyio.create_task_group() as parts:
            for part in front.parts:
                parts.start_soon(_run_part, front, part)
        background.cancel_scope.cancel()


async def _run_part(front: Worker, part: Worker) -> None:
    """``part`` until it stops; one that stops by itself (too many abandoned handler threads)
    stops the whole worker, to be restarted, rather than leave its partition unserved."""
    await part.run(handle_signals=False)
    front._stopping.set()


async def _stop_parts(front: Worker) -> None:
    await front._stopping.wait()
    for part in front.parts:
        part._stopping.set()
    await front._grace_over.wait()  # a second signal: the partitions skip their grace too
    for part in front.parts:
        part._grace_over.set()


async def _refresh_gauges(front: Worker, count: int) -> None:
    """The queue's gauges (pending, lag...) over all its partitions (summed unless labelled)."""
    metrics = metrics_for(front.queue)
    every = front.keys.part
    while True:
        try:
            metrics.observe_partitions(front.group, [
                await read_counts(front.client, every(i), front.group) for i in range(count)])
        except Exception as exc:  # a gauge refresh must never stop a worker
            log.debug("metrics: reading counts of %s failed: %s", front.queue, exc)
        await anyio.sleep(GAUGE_INTERVAL_S)
