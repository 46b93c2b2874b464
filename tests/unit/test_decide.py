"""What a failure means: the worker's pure decision, without Redis."""

from __future__ import annotations

from datetime import timedelta

from streamflow import Backoff, Discard, RateLimited, Retry
from streamflow.errors import JobTimeout
from streamflow.worker.decide import Verdict, decide

BACKOFF = Backoff("fixed", 2.0, 60.0)


def test_an_error_with_attempts_left_retries_with_the_backoff() -> None:
    decision = decide(ValueError("boom"), attempt=1, attempts=3, backoff=BACKOFF)
    assert (decision.verdict, decision.delay, decision.error) == (
        Verdict.RETRY, 2.0, "ValueError: boom")
    assert decision.is_failure


def test_the_last_attempt_goes_dead_as_failed() -> None:
    decision = decide(ValueError(), attempt=3, attempts=3, backoff=BACKOFF)
    assert (decision.verdict, decision.reason, decision.error) == (
        Verdict.DEAD, "failed", "ValueError")


def test_retry_signal_sets_its_own_delay() -> None:
    decision = decide(Retry(timedelta(seconds=7)), attempt=1, attempts=3, backoff=BACKOFF)
    assert (decision.verdict, decision.delay) == (Verdict.RETRY, 7.0)


def test_discard_goes_dead_at_once_with_its_reason() -> None:
    decision = decide(Discard("bad card"), attempt=1, attempts=3, backoff=BACKOFF)
    assert (decision.verdict, decision.reason, decision.error) == (
        Verdict.DEAD, "discarded", "bad card")


def test_rate_limited_is_not_a_failure_and_spends_no_attempt() -> None:
    decision = decide(RateLimited(1.5), attempt=3, attempts=3, backoff=BACKOFF)
    assert (decision.verdict, decision.delay, decision.queue_wide) == (
        Verdict.RATE_LIMITED, 1.5, True)
    assert not decision.is_failure
    local = decide(RateLimited(0.5, queue=False), attempt=1, attempts=3, backoff=BACKOFF)
    assert not local.queue_wide


def test_the_workers_deadline_and_the_handlers_own_timeout_error_read_differently() -> None:
    ours = decide(JobTimeout(0.25), attempt=1, attempts=3, backoff=BACKOFF)
    theirs = decide(TimeoutError("provider took too long"), attempt=1, attempts=3,
                    backoff=BACKOFF)
    assert ours.error == "timeout: the handler ran longer than 0.25s"
    assert theirs.error == "TimeoutError: provider took too long"
