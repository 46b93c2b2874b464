"""Outcomes: the Redis commands that record what became of finished jobs.

The worker decides (completed, retry later, dead); an ``Outcomes`` buffer turns each decision
into the Lua call that acknowledges the entry atomically with its consequence (events, result,
next attempt, dead letter) plus the status record of tracked jobs. The ack flusher takes the
buffer whole and sends it in one pipeline.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from . import scripts
from .codec import delayed_record, next_attempt_fields
from .job import Job
from .keys import QueueKeys
from .metrics import NoMetrics
from .protocol import F_ID, F_KEY
from .queue.ordered import release_command
from .settings import StreamflowSettings
from .stored_metrics import MINUTE_MS, metrics_args

ERROR_CHARS = 1000

About = str | list[str]
"""What a buffered command is about, for the logs: a job id, or the job ids of a batch."""


class Outcomes:
    """Finished work waiting to be acknowledged, as Redis commands."""

    def __init__(self, keys: QueueKeys, group: str, settings: StreamflowSettings,
                 metrics: NoMetrics) -> None:
        self.keys = keys
        self.group = group
        self.metrics = metrics
        defaults = settings.queue
        self._defaults = defaults
        self._emit_all = scripts.flag(defaults.emit_all)
        self._emit_failures = scripts.flag(defaults.emit_failures)
        self._status_ttl_ms = int(defaults.dedup_ttl * 1000)
        self._metrics_ms = int(defaults.metrics_window * 1000) + MINUTE_MS
        self._level_of = {level: i for i, level in enumerate(keys.levels)}
        self._completed: list[list[tuple[Job, int, Any]]] = [[] for _ in keys.streams]
        self._commands: list[scripts.Command] = []
        self._about: list[About] = []
        self._releases: list[tuple[bytes, str]] = []
        """(key, job id) of ended jobs of an ordered queue: their key goes to the next job."""

    def completed(self, job: Job, duration_ms: int, result: Any) -> None:
        """``job``'s handler returned ``result``."""
        self._completed[self._level_of[job.level]].append((job, duration_ms, result))

    def started(self, job: Job, consumer: str) -> None:
        """A tracked job was handed to a runner."""
        self._status(self._commands, self._about, job, state="active", attempt=job.attempt,
                     started_ms=int(time.time() * 1000), consumer=consumer)

    def retry(self, job: Job, delay: float, error: str, event: str, *,
              spend_attempt: bool = True) -> None:
        """Run ``job`` again after ``delay`` seconds (``event``: retrying or rate_limited)."""
        level = self._level_of[job.level]
        due = int((time.time() + delay) * 1000)
        record = delayed_record(level, next_attempt_fields(job, spend_attempt=spend_attempt))
        if job.options.track:
            self._status(self._commands, self._about, job, state="retrying",
                         error=error[:ERROR_CHARS], due_ms=due, attempt=job.attempt)
        keys = self.keys
        self._about.append(job.id)
        self._commands.append(scripts.RETRY_LATER.command(
            [keys.streams[level], keys.delayed, keys.jobs, keys.events, keys.where],
            [self.group, job.entry_id, job.id, due, record, self._emit_failures,
             self._defaults.events_maxlen, job.name, job.attempt, error[:ERROR_CHARS], event]))

    def dead(self, job: Job, reason: str, error: str, tb: str) -> None:
        """Dead-letter ``job``."""
        if job.options.track:
            self._status(self._commands, self._about, job, state="dead", reason=reason,
                         error=error[:ERROR_CHARS], finished_ms=int(time.time() * 1000))
        self.dead_entry(self._level_of[job.level], job.entry_id, job.id, reason, error, tb,
                        job.fields)
        if len(job.fields) > 2 and F_KEY in job.fields:
            self._releases.append((job.fields[F_KEY], job.id))

    def dead_entry(self, level: int, entry_id: str, job_id: str, reason: str, error: str,
                   tb: str, fields: dict[bytes, bytes]) -> None:
        """Dead-letter a stream entry, a job or not (a malformed entry keeps its raw fields)."""
        self.metrics.dead(self.keys.levels[level], fields.get(b"n"), reason)
        flat: list[bytes] = []
        for key, value in fields.items():
            flat += [key, value]
        keys = self.keys
        self._about.append(job_id)
        metrics_key, metrics_ttl = metrics_args(keys, window_ms=self._metrics_ms)
        self._commands.append(scripts.MOVE_TO_DEAD.command(
            [keys.streams[level], keys.dead, keys.events, keys.where, metrics_key],
            [self.group, entry_id, job_id, reason, error[:ERROR_CHARS], tb,
             int(time.time() * 1000), keys.levels[level], self._emit_failures,
             self._defaults.events_maxlen, *dead_retention(self._defaults), metrics_ttl,
             *flat]))

    def command(self, *command: Any) -> None:
        """Send a plain command with the next flush."""
        self._about.append(str(command[0]))
        self._commands.append(command)

    def take(self) -> tuple[list[scripts.Command], list[About]]:
        """Everything buffered, as commands and what each is about; the buffer starts empty
        again."""
        commands, self._commands = self._commands, []
        about, self._about = self._about, []
        defaults = self._defaults
        done_maxlen = defaults.remove_on_complete
        done_minid = "0"
        if defaults.remove_on_complete_age is not None:
            done_minid = str(int((time.time() - defaults.remove_on_complete_age) * 1000))
        keys = self.keys
        emit = self._emit_all == "1"
        for level, completed in enumerate(self._completed):
            if not completed:
                continue
            self._completed[level] = []
            self.metrics.record_completed(keys.levels[level], completed)
            metrics_key, metrics_ttl = metrics_args(keys, window_ms=self._metrics_ms)
            entry_ids: list[str] = []
            where: list[str] = []  # jobs with an id (an i field): they have a where record
            events: list[Any] = []
            results: list[Any] = []
            for job, duration_ms, result in completed:
                entry_ids.append(job.entry_id)
                fields = job.fields
                if len(fields) > 2:
                    if F_ID in fields:
                        where.append(job.id)
                    if F_KEY in fields:
                        self._releases.append((fields[F_KEY], job.id))
                if emit:
                    events += (job.id, job.name, duration_ms)
                # a handler that returns nothing has no result to keep (its completion is in
                # the events stream): one XADD less per job
                if result is not None and done_maxlen and job.options.keep_result is not False:
                    encoded = _encode_result(result)
                    results += (job.id, job.name, duration_ms, encoded)
                else:
                    encoded = b""
                if job.options.track:
                    self._status(commands, about, job, state="completed", duration_ms=duration_ms,
                                 finished_ms=int(time.time() * 1000), result=encoded)
            about.append([job.id for job, _, _ in completed])
            commands.append(scripts.COMPLETE_JOBS.command(
                [keys.streams[level], keys.events, keys.done, keys.where, metrics_key],
                [self.group, self._emit_all, defaults.events_maxlen, done_maxlen, done_minid,
                 metrics_ttl, len(entry_ids), len(where), len(results) // 4, *entry_ids, *where,
                 *events, *results]))
        if self._releases:  # after the acks: a key goes on only once its job is acknowledged
            releases, self._releases = self._releases, []
            about.append([job_id for _, job_id in releases])
            commands.append(release_command(keys, releases, self._emit_all,
                                            defaults.events_maxlen))
        return commands, about

    def _status(self, commands: list[scripts.Command], about: list[About], job: Job,
                **fields: Any) -> None:
        key = self.keys.status(job.id)
        flat: list[Any] = []
        for name, value in fields.items():
            flat += [name, value]
        commands.append(("HSET", key, *flat))
        commands.append(("PEXPIRE", key, self._status_ttl_ms))
        about += [job.id, job.id]


def dead_retention(defaults: Any) -> list[Any]:
    """The dead stream's trim arguments: exact MAXLEN (0: keep all) and MINID ("0": no age)."""
    minid = "0"
    if defaults.remove_on_fail_age is not None:
        minid = str(int((time.time() - defaults.remove_on_fail_age) * 1000))
    return [defaults.remove_on_fail, minid]


def _encode_result(result: Any) -> bytes:
    try:
        return orjson.dumps(result)
    except TypeError:
        return orjson.dumps(repr(result))
