"""Per-job control: remove, promote, reschedule, retry, update data, cancel, clean.

Each action is one Lua script (``lua/*_job-N.lua``) that checks, atomically, that the job is
still where the lookup saw it and in a state the action applies to; a job that moved meanwhile
(fetched by a worker, promoted by the promoter) is looked up again, a job in a state the action
does not apply to is refused with ``JobStateError`` saying why, and an unknown id raises
``JobNotFound``. Every action is written to the queue's audit stream (``Queue.audit``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from . import scripts, spread_jobs
from .browse import _text
from .codec import encode_data
from .errors import JobNotFound, JobStateError
from .locate import JobReading, Location, locate
from .settings import to_ms

AUDIT_MAXLEN = 10_000
CLEAN_CHUNK = 1000
CLEANABLE = ("completed", "dead", "delayed")
_LOOKUPS = 5
_UNSET: Any = object()


def _refuse(job_id: str, state: str, action: str, applies: str, hint: str = "") -> JobStateError:
    state = "completed" if state == "done" else state
    more = f"; {hint}" if hint else ""
    return JobStateError(f"job {job_id} is {state}: {action} applies to {applies} jobs{more}")


class JobControl(JobReading):
    """Per-job actions of ``Queue`` (mixed into ``Queue``)."""

    def _common(self, actor: str | None) -> list[Any]:
        queue = self.settings.queue
        return [int(time.time() * 1000), scripts.flag(queue.emit_failures), queue.events_maxlen,
                actor or ""]

    async def _where(self, job_id: str) -> Location:
        found = await locate(self.client, self.keys, self.settings.worker.group, job_id)
        if found is None:
            raise JobNotFound(f"job {job_id} not found in queue {self.name} (a finished job is "
                              "kept while its result or dead letter is)")
        return found

    async def remove(self, job_id: str, *, actor: str | None = None, key: str | None = None,
                     partition: int | None = None) -> None:
        """Remove a job that is waiting, delayed or dead (a running job: ``cancel``).

        On a partitioned queue every action runs on the partition holding the job (found as
        `job` finds it: ``key=`` and ``partition=`` mean the same there)."""
        target = await spread_jobs.holder(self, job_id, key=key, partition=partition)
        if target is not self:
            await target.remove(job_id, actor=actor)
            return
        await self._take(job_id, "remove", actor)

    async def cancel(self, job_id: str, *, actor: str | None = None, key: str | None = None,
                     partition: int | None = None) -> str:
        """Cancel a job: ``"cancelled"`` when it was running (the worker holding it cancels
        the handler within a second and dead-letters it with reason ``cancelled``; a handler
        that finishes first stays completed), ``"removed"`` when it was waiting or delayed."""
        target = await spread_jobs.holder(self, job_id, key=key, partition=partition)
        if target is not self:
            outcome: str = await target.cancel(job_id, actor=actor)
            return outcome
        result = await self._take(job_id, "cancel", actor)
        return "cancelled" if result == "cancelling" else "removed"

    async def _take(self, job_id: str, mode: str, actor: str | None) -> str:
        applies = "waiting, delayed or dead" if mode == "remove" else \
            "waiting, delayed or active"
        for _ in range(_LOOKUPS):
            where = await self._where(job_id)
            state = where.view.state
            if state == "active" and mode == "remove":
                raise _refuse(job_id, state, mode, applies, "cancel it instead")
            if state not in ("waiting", "delayed", "dead", "active") or (
                    state == "dead" and mode == "cancel"):
                raise _refuse(job_id, state, mode, applies)
            level = where.level_index or 0
            keys = self.keys
            now, emit, maxlen, who = self._common(actor)
            move_keys = [keys.streams[level], keys.delayed, keys.jobs, keys.dead, keys.where,
                         keys.events, keys.control, keys.audit]
            args = [job_id, where.entry_id or "", where.dead_id or "", mode, now, emit, maxlen,
                    who, level, AUDIT_MAXLEN]
            key = where.view.key
            if key is not None and state in ("waiting", "delayed"):
                # it may hold its key (ordered queue): released in the same move
                move_keys += [keys.keylocks, keys.held(key), *keys.streams]
                args += [key, scripts.flag(self.settings.queue.emit_all)]
            result = _text(await scripts.call(
                self.client, scripts.SCRIPTS["remove_job"], move_keys, args))
            if not result.startswith("!"):
                return result
            if result != "!missing":
                hint = "cancel it instead" if result == "!active" else ""
                raise _refuse(job_id, result[1:], mode, applies, hint)
        raise JobStateError(f"job {job_id} kept moving while we tried to {mode} it; try again")

    async def promote(self, job_id: str, *, actor: str | None = None, key: str | None = None,
                      partition: int | None = None) -> None:
        """Move a delayed job (or a retry waiting out its backoff) to its level now."""
        target = await spread_jobs.holder(self, job_id, key=key, partition=partition)
        if target is not self:
            await target.promote(job_id, actor=actor)
            return
        keys = self.keys
        for _ in range(_LOOKUPS):
            where = await self._where(job_id)
            if where.view.state != "delayed":
                raise _refuse(job_id, where.view.state, "promote", "delayed")
            now, emit, maxlen, who = self._common(actor)
            result = _text(await scripts.call(
                self.client, scripts.SCRIPTS["promote_job"],
                [keys.delayed, keys.jobs, keys.where, keys.events, keys.audit, *keys.streams],
                [job_id, now, emit, maxlen, who, AUDIT_MAXLEN]))
            if not result.startswith("!"):
                return
        raise JobStateError(f"job {job_id} kept moving while we tried to promote it; try again")

    async def reschedule(self, job_id: str, delay: timedelta | float, *,
                         actor: str | None = None, key: str | None = None,
                         partition: int | None = None) -> None:
        """Give a delayed job a new due time, ``delay`` from now."""
        target = await spread_jobs.holder(self, job_id, key=key, partition=partition)
        if target is not self:
            await target.reschedule(job_id, delay, actor=actor)
            return
        now, emit, maxlen, who = self._common(actor)
        keys = self.keys
        result = _text(await scripts.call(
            self.client, scripts.SCRIPTS["reschedule_job"],
            [keys.delayed, keys.events, keys.audit],
            [job_id, now + max(to_ms(delay), 0), now, emit, maxlen, who, AUDIT_MAXLEN]))
        if result.startswith("!"):
            where = await self._where(job_id)
            raise _refuse(job_id, where.view.state, "reschedule", "delayed")

    async def retry(self, job_id: str, *, data: Any = _UNSET, actor: str | None = None,
                    key: str | None = None, partition: int | None = None) -> str:
        """Put one dead job back on its level with fresh attempts; returns its id.

        With ``data=`` the job runs with that data instead (edit and retry): the dead letter
        is kept as the record of the original, and the audit stream notes who changed what.
        """
        target = await spread_jobs.holder(self, job_id, key=key, partition=partition)
        if target is not self:
            retried: str = await target.retry(job_id, data=data, actor=actor)
            return retried
        edit = data is not _UNSET
        encoded = encode_data(data, self.settings.queue.max_payload_bytes) if edit else b""
        keys = self.keys
        levels = self.settings.levels
        for _ in range(_LOOKUPS):
            where = await self._where(job_id)
            if where.view.state != "dead" or where.dead_id is None:
                raise _refuse(job_id, where.view.state, "retry", "dead")
            now, emit, maxlen, who = self._common(actor)
            result = await scripts.call(
                self.client, scripts.SCRIPTS["retry_job"],
                [keys.dead, keys.where, keys.events, keys.audit, *keys.streams],
                [where.dead_id, scripts.flag(edit), encoded, now, emit, maxlen, who,
                 AUDIT_MAXLEN, len(levels), *levels])
            if isinstance(result, list):
                return _text(result[0])
            if _text(result) == "!malformed":
                raise JobStateError(f"job {job_id} is a malformed dead letter (no job name); "
                                    "nothing can run it")
        raise JobStateError(f"job {job_id} kept moving while we tried to retry it; try again")

    async def update_data(self, job_id: str, data: Any, *, actor: str | None = None,
                          key: str | None = None, partition: int | None = None) -> None:
        """Replace the data of a waiting or delayed job. A waiting job keeps its id, attempt
        and enqueue time but goes to the back of its level (stream entries are immutable)."""
        target = await spread_jobs.holder(self, job_id, key=key, partition=partition)
        if target is not self:
            await target.update_data(job_id, data, actor=actor)
            return
        encoded = encode_data(data, self.settings.queue.max_payload_bytes)
        keys = self.keys
        for _ in range(_LOOKUPS):
            where = await self._where(job_id)
            state = where.view.state
            if state not in ("waiting", "delayed"):
                raise _refuse(job_id, state, "update_data", "waiting or delayed")
            level = where.level_index or 0
            now, emit, maxlen, who = self._common(actor)
            result = _text(await scripts.call(
                self.client, scripts.SCRIPTS["update_job"],
                [keys.streams[level], keys.delayed, keys.jobs, keys.where, keys.events,
                 keys.audit],
                [job_id, where.entry_id or "", level, keys.levels[level], encoded, now, emit,
                 maxlen, who, AUDIT_MAXLEN]))
            if not result.startswith("!"):
                return
            if result != "!missing":
                raise _refuse(job_id, result[1:], "update_data", "waiting or delayed")
        raise JobStateError(f"job {job_id} kept moving while we tried to update it; try again")

    async def clean(self, state: str, *, older_than: timedelta | float = 0,
                    limit: int | None = None,
                    progress: Callable[[int], None] | None = None) -> int:
        """Remove ``completed``, ``dead`` or ``delayed`` jobs older than ``older_than``
        (completed/dead: since they finished; delayed: since they were added), at most
        ``limit``; returns how many went. ``progress`` is called with the running total after
        each chunk of 1,000."""
        if state not in CLEANABLE:
            raise ValueError(f"clean applies to {', '.join(CLEANABLE)}, not {state!r}")
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1")
        if spread_jobs.spans(self):  # partition by partition, one running total
            total = 0
            for i in range(getattr(self, "partitions", 1)):
                if limit is not None and total >= limit:
                    break
                done = total
                total += await self.partition(i).clean(
                    state, older_than=older_than,
                    limit=None if limit is None else limit - total,
                    progress=None if progress is None else lambda n, d=done: progress(d + n))
            return total
        keys = self.keys
        target = {"completed": keys.done, "dead": keys.dead, "delayed": keys.delayed}[state]
        kind = "delayed" if state == "delayed" else "stream"
        cutoff = int(time.time() * 1000) - to_ms(older_than)
        removed = 0
        cursor = ""
        while limit is None or removed < limit:
            chunk = CLEAN_CHUNK if limit is None else min(CLEAN_CHUNK, limit - removed)
            count, raw_cursor = await scripts.call(
                self.client, scripts.SCRIPTS["clean_jobs"], [target, keys.jobs],
                [kind, cutoff, chunk, cursor])
            removed += int(count)
            cursor = _text(raw_cursor)
            if progress is not None:
                progress(removed)
            if not cursor:
                break
            if kind == "stream":
                cursor = ""
        return removed
