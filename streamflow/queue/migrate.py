"""Changing the partition count of a queue: move its jobs from the old layout to the new one.

Run while no worker and no producer uses the queue (`migrate_partitions` refuses live workers
and jobs in flight; producers cannot be seen: stop them first). Partitions live on different
Cluster slots, so a move is not atomic: each batch is written to the new layout, then deleted
from the old. Interrupted, a migration is run again: it moves what is left, and at most the
jobs of the batch being moved then run twice (at-least-once, as everywhere in streamflow).

What moves where (a partition ``p`` of the old layout "vanishes" when the new layout has no
partition ``p``, e.g. 2 and 3 going from 4 to 2, or the plain layout going from 1 to N):

* waiting jobs (entries not yet delivered to the group) and delayed or retrying jobs: those
  of a vanishing partition go to the partition of their ordering key, else of their job id
  (a job added without an id: round-robin); in a partition both layouts share, only the jobs
  of ordered keys whose partition changes move (non-ordered jobs may run in any partition);
* per-key order: a key's lock and held jobs move with its jobs, in their order;
* status records (the dedup marks of caller-given ids; older queues: dedup keys) are copied
  to every partition of the new layout with their TTL (a record names a job id, not the key
  that routed it: a re-add finds it wherever it routes). The worker updates the copy where
  the job runs; the others keep the state at the migration until they expire;
* dead letters of a vanishing partition: to the partition of the job id (failure time kept,
  new entry ids); repeatable jobs follow partition 0; a paused queue stays paused;
* what is left of a vanishing partition (finished entries, events, results, metrics, logs,
  business-key indexes) is deleted.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.exceptions import ResponseError

from .. import scripts
from ..errors import QueueBusy
from ..inspect import read_counts
from ..keys import QueueKeys
from ..partitions import Routing, check_partitions
from ..protocol import F_ENQUEUED, F_ID, F_KEY, HELD_SEPARATOR
from ..retention import live_workers
from .admin import Admin
from .base import ensure_groups
from .layout import (
    PARTITIONS_FIELD,
    clear_key_order,
    glob_literal,
    layout_keys,
    scan_batches,
    stored_partitions,
    sum_counts,
)
from .ordered import release_command

BATCH = 500
KEY_FIELD, ID_FIELD = F_KEY.decode(), F_ID.decode()


@dataclass
class Migration:
    """What a migration moved."""

    before: int
    after: int
    waiting: int = 0
    delayed: int = 0
    held: int = 0
    keys: int = 0
    dedup_marks: int = 0
    status: int = 0
    dead: int = 0
    deleted_keys: int = 0
    by_partition: dict[int, int] = field(default_factory=dict)


async def migrate_partitions(queue: Admin, to: int, *, group: str | None = None) -> Migration:
    """Move the jobs of ``queue`` (a ``Queue`` handle, any count) to a layout of ``to``
    partitions and record ``to``. Raises `QueueBusy` while a worker's heartbeat is fresh or
    jobs are in flight (the workers must finish or the reclaimer return them first).
    Handles opened before keep the old count: open new ones (they read the new count)."""
    check_partitions(to)
    client, base = queue.client, QueueKeys(queue.name, queue.settings.prefix,
                                           tuple(queue.settings.levels))
    group = group or queue.settings.worker.group
    before = await stored_partitions(client, base)
    report = Migration(before, to)
    if before == to:
        return report
    old, new = layout_keys(base, before), layout_keys(base, to)
    stale_ms = int(queue.settings.worker.heartbeat_interval * 3 * 1000)
    for keys in {base, *old, *new}:
        if await live_workers(client, keys, stale_after_ms=stale_ms):
            raise QueueBusy(f"queue {queue.name!r} has active workers; stop them (and the "
                            "producers) before changing its partition count")
    in_flight = sum_counts([await read_counts(client, keys, group) for keys in old])["pending"]
    if in_flight:
        raise QueueBusy(f"queue {queue.name!r} has {in_flight} job(s) in flight; let the "
                        "workers finish them (a stopped worker's jobs: run a worker until "
                        "its reclaimer returns them), then stop the workers")
    for keys in new:
        await ensure_groups(client, keys, group)
    router, out = Routing(to), set[str]()
    plain_changes = (before == 1) != (to == 1)  # the plain layout's keys are not a partition's
    movers = [_Mover(client, keys, index, index >= to or plain_changes, new, router, report,
                     out) for index, keys in enumerate(old)]
    paused = any([await client.hget(keys.meta, "paused") == b"1" for keys in old])
    for mover in movers:  # first every job, then the keys' order (a holder moved by an
        await mover.move_jobs(group)  # interrupted run is found in its new partition)
    for mover in movers:
        await mover.move_the_rest()
    if plain_changes:
        await _copy_keys(client, [(old[0].repeat, new[0].repeat),
                                  (old[0].repeat_last, new[0].repeat_last)])
    for mover in movers:
        if mover.vanishing:
            report.deleted_keys += await _clear(queue, mover.keys)
    for keys in new:
        if paused:
            await client.hset(keys.meta, "paused", "1")
    if to == 1:
        await client.hdel(base.meta, PARTITIONS_FIELD)
    else:
        await client.hset(base.meta, PARTITIONS_FIELD, to)
    return report


class _Mover:
    """Moves the jobs of one partition of the old layout."""

    def __init__(self, client: Any, keys: QueueKeys, index: int, vanishing: bool,
                 new: Sequence[QueueKeys], router: Routing, report: Migration,
                 out: set[str]) -> None:
        self.client, self.keys, self.index, self.vanishing = client, keys, index, vanishing
        self.new, self.router, self.report = new, router, report
        self.out = out  # ids of the waiting and delayed jobs seen in every partition

    def dest(self, key: str | None, job_id: str | None) -> int | None:
        """Where a job goes; None when it stays."""
        if not self.vanishing and key is None:
            return None
        target = self.router.of(key, job_id)
        return None if not self.vanishing and target == self.index else target

    async def move_jobs(self, group: str) -> None:
        """Waiting and delayed jobs."""
        for level, stream in enumerate(self.keys.streams):
            await self._streams(level, stream, group)
        await self._delayed()

    async def move_the_rest(self) -> None:
        """Key order, dedup marks, status records, dead letters."""
        await self._key_order()
        await self._dedup()
        await self._status()
        if self.vanishing:
            await self._dead()

    async def _streams(self, level: int, stream: str, group: str) -> None:
        start = "-"
        try:
            for info in await self.client.xinfo_groups(stream):
                name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
                if name == group:
                    last = info["last-delivered-id"]
                    start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
        except ResponseError:  # no such stream: nothing waits
            return
        while True:
            entries = await self.client.xrange(stream, min=start, count=BATCH)
            if not entries:
                return
            start = "(" + entries[-1][0].decode()
            moves: list[tuple[bytes, dict[bytes, bytes], int]] = []
            for entry_id, fields in entries:
                job_id = _text(fields.get(F_ID))
                if job_id is not None:
                    self.out.add(job_id)
                target = self.dest(_text(fields.get(F_KEY)), job_id)
                if target is not None:
                    if F_ENQUEUED not in fields:  # the enqueue time was the old entry id's
                        fields[F_ENQUEUED] = entry_id.split(b"-")[0]
                    moves.append((entry_id, fields, target))
            if not moves:
                continue
            pipe = self.client.pipeline(transaction=False)
            for _, fields, target in moves:
                pipe.xadd(self.new[target].streams[level], fields)
            new_ids = await pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for (entry_id, fields, target), new_id in zip(moves, new_ids, strict=True):
                if F_ID in fields:
                    pipe.hset(self.new[target].where, fields[F_ID],
                              f"{level}:{new_id.decode()}")
                    pipe.hdel(self.keys.where, fields[F_ID])
                pipe.xdel(stream, entry_id)
                self._count(target)
            await pipe.execute()
            self.report.waiting += len(moves)

    async def _delayed(self) -> None:
        members = await self.client.zrange(self.keys.delayed, 0, -1, withscores=True)
        for chunk in _chunks(members):
            pipe = self.client.pipeline(transaction=False)
            for job_id, _ in chunk:
                pipe.hget(self.keys.jobs, job_id)
            records = await pipe.execute()
            write = self.client.pipeline(transaction=False)
            remove = self.client.pipeline(transaction=False)
            for (job_id, due), record in zip(chunk, records, strict=True):
                self.out.add(job_id.decode())
                fields = _record_fields(record)
                target = self.dest(fields.get(KEY_FIELD), fields.get(ID_FIELD, job_id.decode()))
                if target is None:
                    continue
                if record is not None:
                    write.hset(self.new[target].jobs, job_id, record)
                write.zadd(self.new[target].delayed, {job_id: due})
                remove.zrem(self.keys.delayed, job_id)
                remove.hdel(self.keys.jobs, job_id)
                self.report.delayed += 1
                self._count(target)
            await write.execute()
            await remove.execute()

    async def _key_order(self) -> None:
        locks = list((await self.client.hgetall(self.keys.keylocks)).items())
        for chunk in _chunks(locks):
            await self._key_order_chunk(chunk)

    async def _key_order_chunk(self, locks: Sequence[tuple[bytes, bytes]]) -> None:
        """Up to `BATCH` keys, a few pipelines for them all (written before deleted)."""
        releases, moving = [], []
        for raw_key, holder in locks:
            target = self.dest(raw_key.decode(), None)
            stale = holder.decode() not in self.out  # its job is neither waiting nor delayed
            if target is not None:
                moving.append((raw_key.decode(), holder, target, stale))
            elif stale:  # its job ended without releasing the key: the next one goes
                releases.append(release_command(self.keys, [(raw_key, holder.decode())], "0", 0))
        await scripts.pipeline(self.client, releases)
        if not moving:
            return
        pipe = self.client.pipeline(transaction=False)
        for _, holder, target, stale in moving:  # moved by an interrupted run of the migration?
            if stale:
                pipe.hexists(self.new[target].where, holder)
                pipe.zscore(self.new[target].delayed, holder)
        found = iter(await pipe.execute())
        for i, (key, holder, target, stale) in enumerate(moving):
            if stale:
                in_stream, due = next(found), next(found)
                moving[i] = (key, holder, target, not (in_stream or due is not None))
        pipe = self.client.pipeline(transaction=False)
        for key, *_ in moving:
            pipe.lrange(self.keys.held(key), 0, -1)
        lists: list[list[bytes]] = await pipe.execute()
        ids = [[item.decode().split(HELD_SEPARATOR, 1)[1] for item in items] for items in lists]
        pipe = self.client.pipeline(transaction=False)
        for key_ids in ids:
            if key_ids:
                pipe.hmget(self.keys.jobs, key_ids)
        records = iter(await pipe.execute())
        write = self.client.pipeline(transaction=False)
        remove = self.client.pipeline(transaction=False)
        for (key, holder, target, stale), items, key_ids in zip(moving, lists, ids, strict=True):
            dest = self.new[target]
            held = [(item, job_id, record) for item, job_id, record
                    in zip(items, key_ids, next(records) if key_ids else [], strict=True)
                    if record is not None]
            if stale and held:
                item, job_id, record = held.pop(0)
                self._let_go(write, dest, item, job_id, record)
                holder, stale = job_id.encode(), False
            for item, job_id, record in held:
                write.hset(dest.jobs, job_id, record)
                write.rpush(dest.held(key), item)
            if not stale:
                write.hset(dest.keylocks, key, holder)
            remove.delete(self.keys.held(key))
            remove.hdel(self.keys.keylocks, key)
            if key_ids:
                remove.hdel(self.keys.jobs, *key_ids)
            self.report.keys += 1
            self.report.held += len(held)
            self._count(target)
        await write.execute()
        await remove.execute()

    def _let_go(self, pipe: Any, dest: QueueKeys, item: bytes, job_id: str,
                record: bytes) -> None:
        """Queue in ``pipe`` the move of the first held job of a key whose holder is gone."""
        due = int(item.decode().split(HELD_SEPARATOR, 1)[0])
        if due > time.time() * 1000:
            pipe.hset(dest.jobs, job_id, record)
            pipe.zadd(dest.delayed, {job_id: due})
            self.report.delayed += 1
        else:
            level, *flat = orjson.loads(record)
            pipe.xadd(dest.streams[level], dict(zip(flat[::2], flat[1::2], strict=True)))
            self.report.waiting += 1

    def _targets(self) -> list[QueueKeys]:
        """The partitions a dedup mark is copied to: every other one of the new layout."""
        return [keys for index, keys in enumerate(self.new)
                if self.vanishing or index != self.index]

    async def _dedup(self) -> None:
        """The dedup marks of a queue written before status records became the marks."""
        targets = self._targets()
        prefix = self.keys.dedup("")
        async for marks in scan_batches(self.client, glob_literal(prefix) + "*", BATCH):
            pipe = self.client.pipeline(transaction=False)
            for mark in marks:
                pipe.get(mark)
                pipe.pttl(mark)
            read = await pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for mark, value, ttl in zip(marks, read[::2], read[1::2], strict=True):
                if value is None:
                    continue
                job_id = mark.decode()[len(prefix):]
                for keys in targets:
                    pipe.set(keys.dedup(job_id), value, nx=True, px=ttl if ttl > 0 else None)
                if self.vanishing:
                    pipe.delete(mark)
                self.report.dedup_marks += 1
            await pipe.execute()

    async def _status(self) -> None:
        targets = self._targets()
        prefix = self.keys.status("")
        async for raws in scan_batches(self.client, glob_literal(prefix) + "*", BATCH):
            copies = [(raw, keys.status(raw.decode()[len(prefix):]))
                      for raw in raws for keys in targets]
            await _copy_keys(self.client, copies, delete=self.vanishing)
            self.report.status += len(raws)

    async def _dead(self) -> None:
        start = "-"
        while True:
            entries = await self.client.xrange(self.keys.dead, min=start, count=BATCH)
            if not entries:
                return
            start = "(" + entries[-1][0].decode()
            pipe = self.client.pipeline(transaction=False)
            for _, fields in entries:
                target = self.router.of(_text(fields.get(F_KEY)), _text(fields.get(F_ID)))
                pipe.xadd(self.new[target].dead, fields)
            await pipe.execute()
            self.report.dead += len(entries)

    def _count(self, target: int) -> None:
        self.report.by_partition[target] = self.report.by_partition.get(target, 0) + 1


async def _copy_keys(client: Any, pairs: Sequence[tuple[Any, str]], *,
                     delete: bool = False) -> None:
    """DUMP/RESTORE each (source, destination) with its TTL (works across Cluster slots)."""
    pipe = client.pipeline(transaction=False)
    for source, _ in pairs:
        pipe.dump(source)
        pipe.pttl(source)
    read = await pipe.execute()
    pipe = client.pipeline(transaction=False)
    for (source, dest), dumped, ttl in zip(pairs, read[::2], read[1::2], strict=True):
        if dumped is None:
            continue
        pipe.restore(dest, max(ttl, 0), dumped, replace=True)
        if delete:
            pipe.delete(source)
    await pipe.execute()


async def _clear(queue: Admin, keys: QueueKeys) -> int:
    """Delete what is left of a vanishing partition (or plain layout); how many keys."""
    view = copy.copy(queue)
    view.keys = keys
    return await Admin.obliterate(view, force=True) + await clear_key_order(queue.client, keys)


def _record_fields(record: bytes | None) -> dict[str, str]:
    if record is None:
        return {}
    flat = orjson.loads(record)[1:]
    return dict(zip(flat[::2], flat[1::2], strict=False))


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
