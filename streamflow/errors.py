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
    └── JobSignal            (raised by handlers)
        ├── Retry
        ├── RateLimited
        └── Discard
"""

from __future__ import annotations

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
