"""What a failed run means for its job: a pure function, no Redis, no clock."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..backoff import Backoff
from ..connection import redact
from ..errors import Discard, HandlerError, JobCancelled, JobCrashed, JobTimeout, RateLimited, Retry
from ..protocol import DeadReason
from ..settings import to_seconds


class Verdict(StrEnum):
    """The three fates of a failed run."""

    RETRY = "retrying"
    """Run again after ``delay`` (spends an attempt)."""
    RATE_LIMITED = "rate_limited"
    """Run again after ``delay`` without spending an attempt; not a failure of the job."""
    DEAD = "dead"
    """Dead-letter the job with ``reason``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a job whose handler raised."""

    verdict: Verdict
    error: str
    """One line for the events stream, the dead letter and the logs."""
    delay: float = 0.0
    """Seconds until the next run (retries and rate limits)."""
    reason: str = ""
    """Why the job is dead (``failed``, ``discarded``, ``crashed``)."""
    queue_wide: bool = False
    """A rate limit that stops every worker of the queue for ``delay``."""

    @property
    def is_failure(self) -> bool:
        """Whether the run counts as a failed one (a rate limit does not)."""
        return self.verdict is not Verdict.RATE_LIMITED


def describe(exc: BaseException) -> str:
    """``exc`` as one line: its type and, when it has one, its message; the passwords of URLs
    in it masked (it goes to dead letters, events and logs)."""
    if isinstance(exc, JobTimeout | JobCrashed | HandlerError):
        return redact(str(exc))
    text = str(exc)
    return redact(f"{type(exc).__name__}: {text}") if text else type(exc).__name__


def decide(exc: BaseException, *, attempt: int, attempts: int, backoff: Backoff) -> Decision:
    """The fate of a job whose attempt number ``attempt`` (of ``attempts``) raised ``exc``.

    ``RateLimited`` reschedules without spending an attempt; ``Discard`` dead-letters at once;
    ``JobCancelled`` (an operator's ``Queue.cancel``) dead-letters with reason ``cancelled``;
    anything else (a ``JobTimeout`` of the worker's deadline, a ``JobCrashed`` child process,
    ``SystemExit`` too) retries with ``backoff``, or with ``Retry.delay``, until the attempts
    run out.
    """
    error = describe(exc)
    if isinstance(exc, RateLimited):
        return Decision(Verdict.RATE_LIMITED, error, to_seconds(exc.delay),
                        queue_wide=exc.queue)
    if isinstance(exc, Discard):
        return Decision(Verdict.DEAD, redact(exc.reason), reason=DeadReason.DISCARDED)
    if isinstance(exc, JobCancelled):
        return Decision(Verdict.DEAD, str(exc), reason="cancelled")
    if attempt >= attempts:
        crashed = isinstance(exc, JobCrashed)
        return Decision(Verdict.DEAD, error,
                        reason=DeadReason.CRASHED if crashed else DeadReason.FAILED)
    if isinstance(exc, Retry) and exc.delay is not None:
        delay = to_seconds(exc.delay)
    else:
        delay = backoff.seconds(attempt)
    return Decision(Verdict.RETRY, error, delay)
