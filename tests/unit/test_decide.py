"""What a failure means: the worker's pure decision, without Redis."""

from __future__ import annotations

from datetime import timedelta

from streamflow import Backoff, Discard, RateLimited, Retry
from streamflow.errors import HandlerError, JobCrashed, JobTimeout
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


def test_system_exit_and_keyboard_interrupt_are_failures_of_the_job() -> None:
    exited = decide(SystemExit(3), attempt=1, attempts=3, backoff=BACKOFF)
    assert (exited.verdict, exited.error) == (Verdict.RETRY, "SystemExit: 3")
    interrupted = decide(KeyboardInterrupt(), attempt=3, attempts=3, backoff=BACKOFF)
    assert (interrupted.verdict, interrupted.reason, interrupted.error) == (
        Verdict.DEAD, "failed", "KeyboardInterrupt")


def test_a_crashed_child_retries_then_goes_dead_as_crashed() -> None:
    first = decide(JobCrashed(-11), attempt=1, attempts=2, backoff=BACKOFF)
    assert (first.verdict, first.error) == (
        Verdict.RETRY, "the handler's process was killed by SIGSEGV mid-job")
    last = decide(JobCrashed(7), attempt=2, attempts=2, backoff=BACKOFF)
    assert (last.verdict, last.reason, last.error) == (
        Verdict.DEAD, "crashed", "the handler's process exited with code 7 mid-job")


def test_an_error_from_a_child_reads_as_the_handlers_own() -> None:
    decision = decide(HandlerError("ValueError", "bad", "tb"), attempt=1, attempts=2,
                      backoff=BACKOFF)
    assert decision.error == "ValueError: bad"


def test_error_texts_have_the_passwords_of_urls_masked() -> None:
    failed = decide(OSError("no route to rediss://app:s3cret@cache:6380"), attempt=1,
                    attempts=2, backoff=BACKOFF)
    assert failed.error == "OSError: no route to rediss://app:***@cache:6380"
    discarded = decide(Discard("see https://u:pw@psp/x"), attempt=1, attempts=2,
                       backoff=BACKOFF)
    assert discarded.error == "see https://u:***@psp/x"
