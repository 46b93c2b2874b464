"""A queue of N partitions: routing of adds, and operations that span every partition.

Partition ``i`` is a whole queue layout under the hash tag ``{name#i}`` (`QueueKeys.part`);
``Queue.partition(i)`` is a handle on it alone. The partition count lives in the unpartitioned
``meta`` hash (``partitions``); opening a queue that holds jobs with another count is refused
(`PartitionMismatch`). With one partition nothing here runs on the add path.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any, Self

import anyio

from ..backoff import Backoff
from ..errors import InvalidJob
from ..inspect import DeadEntry, JobInfo, QueueCounts, RepeatInfo, read_counts
from ..keys import QueueKeys
from ..metrics import metrics_for
from ..partitions import Routing, check_partitions
from ..settings import Durability, StreamflowSettings
from ..telemetry import publish_span
from .admin import Admin
from .base import CHUNK, ensure_groups
from .getters import Getters
from .layout import PARTITIONS_FIELD as PARTITIONS_FIELD
from .layout import check_partition_count as check_partition_count
from .layout import clear_key_order, sum_counts
from .layout import stored_partitions as stored_partitions
from .ordered import KeyOrder, ordered_add_command, send_ordered
from .producer import JobSpec, Producer, as_spec

__all__ = ["PARTITIONS_FIELD", "Partitioned", "check_partition_count", "stored_partitions",
           "sum_counts"]


class _Spread(Producer, Admin, Getters):
    """The partitions of a queue: count, handles on each, routing."""

    def __init__(self, name: str, *, url: str | None = None,
                 settings: StreamflowSettings | None = None, client: Any = None,
                 durability: Durability | None = None, partitions: int | None = None,
                 ordered: bool | Iterable[str] | None = None) -> None:
        super().__init__(name, url=url, settings=settings, client=client,
                         durability=durability)
        self.partitions = check_partitions(partitions or self.settings.queue.partitions)
        self._count_given = partitions is not None or self.partitions > 1
        self._count_checked = False
        self.key_order = KeyOrder.of(ordered, self.settings.queue)
        """Which keys are held in order: ``ordered=True`` every key, ``ordered=("pay_",)``
        the keys with one of these prefixes (docs/scaling.md)."""
        self.ordered = self.key_order.enabled
        """Whether any key is held in order (README "Scaling out")."""
        self.partition_index: int | None = None
        """Which partition this handle is, when it is one (`partition`)."""
        self._views: dict[int, Self] = {}
        self._routing = Routing(self.partitions)

    async def discover(self) -> int:
        """Adopt the partition count the queue recorded, unless this handle was given one
        (``partitions=`` or the setting); returns the count in use. ``async with`` does it."""
        if not self._count_given and self.partition_index is None:
            stored = await stored_partitions(self.client, self.keys)
            if stored != self.partitions:
                self.partitions = stored
                self._routing = Routing(stored)
                self._views = {}
        return self.partitions

    def partition(self, index: int) -> Self:
        """A handle on partition ``index`` alone (same client): counts, dead letters, drain..."""
        if not 0 <= index < self.partitions:
            raise ValueError(f"partition {index} does not exist: the queue has "
                             f"{self.partitions}")
        view = self._views.get(index)
        if view is None:
            view = copy.copy(self)
            view._client = self.client
            view._own_client = False
            view.keys = self.keys.part(index)
            view._enqueuer_ = None  # its own add path, on its own keys
            view.partitions = 1
            view.partition_index = index
            view._views = {}
            self._views[index] = view
        return view

    @property
    def partition_keys(self) -> list[QueueKeys]:
        """The keys of every partition (the queue's own keys when it has one)."""
        if self.partitions == 1:
            return [self.keys]
        return [self.keys.part(i) for i in range(self.partitions)]

    def route(self, key: str | None = None, job_id: str | None = None) -> int:
        """The partition of a job: by ``key``, else by ``job_id``, else round-robin."""
        return self._routing.of(key, job_id)

    async def _check_count(self, group: str | None = None) -> None:
        await check_partition_count(self.client, self.keys, self.partitions,
                                    group or self.settings.worker.group)
        self._count_checked = True

    def _first(self) -> Self:
        return self if self.partitions == 1 else self.partition(0)

    def _by_id(self, entry_ids: Sequence[str] | None) -> list[Self]:
        if self.partitions > 1 and entry_ids is not None:
            raise ValueError("dead-letter entry ids are per partition: use queue.partition(i)")
        return self._each()

    def _each(self) -> list[Self]:
        if self.partitions == 1:
            return [self]
        return [self.partition(i) for i in range(self.partitions)]


class Partitioned(_Spread):
    """Spreads a queue over ``partitions``; with one partition, the plain queue."""

    async def ensure_group(self, group: str | None = None) -> None:
        """Create the consumer group on every level stream of every partition; check (and on
        an empty queue, record) the partition count."""
        if self.partition_index is not None:
            await super().ensure_group(group)
            return
        await self.discover()
        await self._check_count(group)
        if self.partitions == 1:
            await super().ensure_group(group)
            return
        for keys in self.partition_keys:
            await ensure_groups(self.client, keys, group or self.settings.worker.group)

    async def add(self, name: str, data: Any = None, *, priority: str | None = None,
                  delay: timedelta | float | None = None, job_id: str | None = None,
                  attempts: int | None = None, backoff: Backoff | None = None,
                  timeout: float | None = None, track: bool = False,
                  keep_result: bool | None = None,
                  index: Mapping[str, str | int] | None = None,
                  durability: Durability | None = None, key: str | None = None) -> str | None:
        """Add one job (see `Producer.add`); ``key`` routes it on a partitioned queue: every
        job of one key goes to the same partition (README "Scaling out")."""
        if key is None and self.partitions == 1:  # the plain queue: straight to the send
            return await self._add_one(name, data, priority, delay, job_id, attempts, backoff,
                                       timeout, track, keep_result, index, durability)
        if self.key_order.applies(key):
            spec = JobSpec(name, data, priority, delay, job_id, attempts, backoff, timeout,
                           track, keep_result, index, key)
            return (await self.add_bulk([spec], durability=durability))[0]
        if self.partitions > 1 and not self._count_checked:  # used without `async with`
            await self._check_count()
        target = self if self.partitions == 1 else self.partition(self.route(key, job_id))
        return await target._add_one(name, data, priority, delay, job_id, attempts, backoff,
                                     timeout, track, keep_result, index, durability)

    async def add_bulk(self, jobs: Iterable[JobSpec | tuple[str, Any]], *,
                       durability: Durability | None = None) -> list[str | None]:
        """Add many jobs (see `Producer.add_bulk`); on a partitioned queue grouped by
        partition: one pipeline per partition (a script call per chunk), sent concurrently."""
        if self.partitions == 1 and not self.ordered:
            return await super().add_bulk(jobs, durability=durability)
        specs = [as_spec(job) for job in jobs]
        if not specs:
            return []
        if not self._count_checked and self.partitions > 1:  # used without `async with`
            await self._check_count()
        groups: dict[int, list[int]] = {}
        for index, spec in enumerate(specs):
            if spec.job_id is not None and not spec.job_id:
                raise InvalidJob("job_id must be a non-empty string")
            groups.setdefault(self.route(spec.key, spec.job_id), []).append(index)
        durability = self._durability(durability)
        now = int(time.time() * 1000)
        first = specs[0]
        with publish_span(self.name, str(first.name), first.priority
                          if isinstance(first.priority, str) else self.settings.default_level,
                          len(specs)) as (_, carrier):
            tp, ts = carrier.get("traceparent"), carrier.get("tracestate")
            sends: list[tuple[list[int], Callable[[], Awaitable[list[str | None]]]]] = []
            for partition, indexes in sorted(groups.items()):  # every job checked first
                view = self if self.partitions == 1 else self.partition(partition)
                keyed: list[int] = []
                plain: list[int] = []
                for i in indexes:
                    (keyed if self.key_order.applies(specs[i].key) else plain).append(i)
                if plain:
                    prepared = view._enqueuer.prepare_all([specs[i] for i in plain], now, tp,
                                                          ts)
                    sends.append((plain, partial(view._enqueuer.add_many, prepared,
                                                 durability)))
                if keyed:  # one pipeline: its chunks run in the order the jobs were given
                    commands = [ordered_add_command(view, [specs[i] for i in keyed[start:
                                                    start + CHUNK]], carrier)
                                for start in range(0, len(keyed), CHUNK)]
                    sends.append((keyed, partial(send_ordered, view, commands, durability)))
            sent = await _concurrently([send for _, send in sends])
        order = [index for indexes, _ in sends for index in indexes]
        ids: list[str | None] = [None] * len(specs)
        for index, job_id in zip(order, [i for part in sent for i in part], strict=True):
            ids[index] = job_id
        metrics_for(self.name).added_specs(specs, ids, self.settings.default_level)
        return ids

    async def counts(self, group: str | None = None) -> QueueCounts:
        """Counts summed over the partitions (``consumers``: the most any partition has)."""
        if self.partitions == 1:
            return await super().counts(group)
        return sum_counts([await read_counts(self.client, keys,
                                             group or self.settings.worker.group)
                           for keys in self.partition_keys])

    async def is_paused(self) -> bool:
        """Whether the queue (any partition of it) is paused."""
        if self.partitions == 1:
            return await super().is_paused()
        return any([await self.partition(i).is_paused() for i in range(self.partitions)])

    async def _set_paused(self, paused: bool) -> None:
        if self.partitions == 1:
            await super()._set_paused(paused)
            return
        for i in range(self.partitions):
            await self.partition(i)._set_paused(paused)

    async def set_rate_limit(self, max_jobs: int, per: timedelta | float, *,
                             margin: timedelta | float = 0.025) -> None:
        """See `Admin.set_rate_limit`; on a partitioned queue the limit holds per partition."""
        for view in self._each():
            await Admin.set_rate_limit(view, max_jobs, per, margin=margin)

    async def clear_rate_limit(self) -> None:
        """Remove the rate limit (of every partition)."""
        for view in self._each():
            await Admin.clear_rate_limit(view)

    async def rate_limit(self, delay: timedelta | float) -> None:
        """Stop every worker of every partition fetching for ``delay``."""
        for view in self._each():
            await Admin.rate_limit(view, delay)

    async def get_job(self, job_id: str, *, key: str | None = None) -> JobInfo | None:
        """See `Getters.get_job`; on a partitioned queue the partition of ``key`` (else of the
        id) is read first, then the others (a job added with a key it was not given here)."""
        if self.partitions == 1:
            return await super().get_job(job_id)
        first = self.route(key, job_id)
        for i in (first, *(i for i in range(self.partitions) if i != first)):
            found = await Getters.get_job(self.partition(i), job_id)
            if found is not None:
                return found
        return None

    async def dead(self, count: int = 100, start: str = "-") -> list[DeadEntry]:
        """Dead-lettered jobs, oldest first; on a partitioned queue up to ``count`` from each
        partition merged by failure time (``start`` is a cursor of one partition: page
        through ``partition(i).dead()`` instead)."""
        if self.partitions == 1:
            return await super().dead(count, start)
        merged: list[DeadEntry] = []
        for view in self._each():
            merged += await Getters.dead(view, count, start)
        return sorted(merged, key=lambda entry: entry["failed_at_ms"])[:count]

    async def drain(self, group: str | None = None) -> int:
        """Remove waiting and delayed jobs of every partition (see `Admin.drain`); on an
        ordered queue also the held jobs and the key locks."""
        drained = 0
        for view in self._each():
            drained += await Admin.drain(view, group)
            if self.ordered:  # held jobs' envelopes went with the jobs hash
                await clear_key_order(self.client, view.keys)
        return drained

    async def obliterate(self, *, force: bool = False) -> int:
        """Delete every key of every partition (see `Admin.obliterate`)."""
        deleted = 0
        for view in self._each():
            deleted += await Admin.obliterate(view, force=force)
            deleted += await clear_key_order(self.client, view.keys)
        if self.partitions > 1:
            deleted += int(await self.client.delete(self.keys.meta))
        return deleted

    async def retry_dead(self, entry_ids: Sequence[str] | None = None) -> int:
        """See `Admin.retry_dead`; entry ids are per partition: on a partitioned queue pass
        them to ``partition(i).retry_dead``."""
        return sum([await Admin.retry_dead(view, entry_ids) for view in self._by_id(entry_ids)])

    async def purge_dead(self, entry_ids: Sequence[str] | None = None) -> int:
        """See `Admin.purge_dead`; entry ids are per partition (as `retry_dead`)."""
        return sum([await Admin.purge_dead(view, entry_ids) for view in self._by_id(entry_ids)])

    async def repeat(self, *args: Any, **kwargs: Any) -> str:
        """See `Admin.repeat`; a partitioned queue's repeatable jobs live in partition 0."""
        return await Admin.repeat(self._first(), *args, **kwargs)

    async def remove_repeat(self, key: str) -> bool:
        """See `Admin.remove_repeat`."""
        return await Admin.remove_repeat(self._first(), key)

    async def repeats(self) -> list[RepeatInfo]:
        """See `Getters.repeats`."""
        return await Getters.repeats(self._first())


async def _concurrently(sends: Sequence[Callable[[], Awaitable[list[str | None]]]]
                        ) -> list[list[str | None]]:
    """Run ``sends`` at once; their results in order; the first error raised as itself."""
    results: list[list[str | None]] = [[] for _ in sends]

    async def one(index: int) -> None:
        results[index] = await sends[index]()

    if len(sends) == 1:
        await one(0)
        return results
    try:
        async with anyio.create_task_group() as tg:
            for index in range(len(sends)):
                tg.start_soon(one, index)
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None
    return results
