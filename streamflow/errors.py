"""The exception tree of streamflow.

    StreamflowError
    ├── ConfigurationError
    │   └── PartitionMismatch
    ├── PayloadError
    │   ├── PayloadTooLarge
    │   └── PayloadNotSerializable
    ├── InvalidJob
    ├── InvalidQueueName
    ├── UnknownPriority
    ├── ScriptError
    ├── QueueBusy
    ├── QueueFull
    ├── DurabilityError
    ├── JobTimeout           (the worker's deadline for a handler fired)
    ├── JobNotFound
    ├── JobStateError
    ├── JobCancelled         (raised inside a worker when an operator cancels a running job)
    ├── JobCrashed           (the child process running a handler died)
    ├── HandlerError         (a handler failed in a child process)
    └── JobSignal            (raised by handlers)
        ├── Retry
        ├── RateLimited
        └── Discard
"""

from __future__ import annotations

import signal
from datetime import timedelta
from enum import IntEnum


class StreamflowError(Exception):
    """Base of every error streamflow raises."""


class ConfigurationError(StreamflowError):
    """Raised when settings or arguments cannot work together."""


class PartitionMismatch(ConfigurationError):
    """Raised when a queue holding jobs is opened with another partition count than its own."""


class PayloadError(StreamflowError, ValueError):
    """Raised when a job's data is refused before anything is written."""


class PayloadTooLarge(PayloadError):
    """Raised when an encoded payload exceeds the queue's size limit."""


class PayloadNotSerializable(PayloadError):
    """Raised when a payload cannot be encoded as JSON."""


class InvalidJob(StreamflowError, ValueError):
    """Raised when a job's name, id or options are not usable (refused before writing)."""


class InvalidQueueName(StreamflowError, ValueError):
    """Raised when a queue name is not 1-100 letters, digits, ``.``, ``_`` or ``-``."""


class UnknownPriority(StreamflowError, ValueError):
    """Raised when a priority level is not one of the queue's levels."""


class QueueBusy(StreamflowError):
    """Raised when an operation that destroys a queue meets active workers."""


class QueueFull(StreamflowError):
    """Raised when Redis refused an add because it reached ``maxmemory`` (``noeviction``):
    nothing of the refused add was written. Retry later: workers free memory as they work
    (a webhook ingress answers 503 so the provider redelivers)."""


class DurabilityError(StreamflowError):
    """Raised when ``durability="replicated"`` and no replica confirmed the write in time."""


class JobTimeout(StreamflowError):
    """Raised when a handler ran longer than its job's timeout and the worker stopped it
    (a ``TimeoutError`` the handler raises itself is a plain failure, reported as such)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timeout: the handler ran longer than {seconds:g}s")
        self.seconds = seconds


class JobCrashed(StreamflowError):
    """Raised when the child process running a handler (``isolation="process"``) died
    mid-job: ``os._exit``, a segfault in a C extension, the kernel's OOM killer."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"the handler's process {_ended(exitcode)} mid-job")
        self.exitcode = exitcode


class HandlerError(StreamflowError):
    """Raised when a handler failed in a child process (``isolation="process"``): the type
    name, message and traceback of what it raised there."""

    def __init__(self, type_name: str, message: str, traceback: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.traceback = traceback


def _ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "died"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class ScriptCode(IntEnum):
    """Negative return codes of the Lua scripts."""

    NOT_PENDING = -2


class ScriptError(StreamflowError):
    """Raised when a Lua script answers with a negative code."""

    def __init__(self, script: str, code: ScriptCode) -> None:
        super().__init__(f"{script}: {code.name.lower()}")
        self.script = script
        self.code = code


class JobSignal(Exception):
    """Base of the exceptions a handler raises to steer its job."""


class Retry(JobSignal):
    """Raised by a handler to run the job again after ``delay`` (spends an attempt)."""

    def __init__(self, delay: timedelta | float | None = None, reason: str = "retry") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class RateLimited(JobSignal):
    """Raised by a handler when a provider said "slow down" (HTTP 429): the job runs again after
    ``delay`` without spending an attempt, and with ``queue=True`` the whole queue stops
    fetching for ``delay`` (every worker of the group)."""

    def __init__(self, delay: timedelta | float, *, queue: bool = True) -> None:
        super().__init__(f"rate limited for {delay}")
        self.delay = delay
        self.queue = queue


class Discard(JobSignal):
    """Raised by a handler for an error that must not be retried: the job goes to dead letters."""

    def __init__(self, reason: str = "discarded") -> None:
        super().__init__(reason)
        self.reason = reason


class JobNotFound(StreamflowError, LookupError):
    """Raised when a per-job action names a job the queue does not hold."""


class JobStateError(StreamflowError):
    """Raised when a per-job action does not apply to the job's state; the message says why."""


class JobCancelled(StreamflowError):
    """Raised inside a worker, in place of the handler's outcome, when an operator cancelled
    the running job (``Queue.cancel``): the job is dead-lettered with reason ``cancelled``."""
