"""Sweep: deadlines as dict entries, fired by one periodic timer; set, moved, cleared. And the
ingress's per-request `_Deadline` on a Sweep: `asyncio.timeout`'s behaviour, branch by branch."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from consumers.razorpay.deadlines import MAX_TICK, Sweep, sweep_of, tick_for
from consumers.razorpay.ingress import _Deadline
from tests.support import wait_until

pytestmark = pytest.mark.anyio


class Fired:
    """Records the keys whose deadline fired, and when."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.event = asyncio.Event()

    def __call__(self, key: str) -> None:
        self.at[key] = time.monotonic()
        self.event.set()

    async def wait(self, key: str) -> None:
        async with asyncio.timeout(5):
            while key not in self.at:
                self.event.clear()
                await self.event.wait()


async def test_a_deadline_fires_once_when_due_and_at_most_a_tick_late() -> None:
    sweep, fired = Sweep(0.01), Fired()
    started = time.monotonic()
    sweep.set("a", 0.05, fired)
    assert "a" in sweep
    await fired.wait("a")
    assert 0.05 <= fired.at["a"] - started < 0.05 + 0.01 + 0.2  # (+ a busy machine's delay)
    assert "a" not in sweep


async def test_a_cleared_deadline_never_fires_and_a_moved_one_fires_at_its_new_time() -> None:
    sweep, fired = Sweep(0.01), Fired()
    started = time.monotonic()
    sweep.set("cleared", 0.02, fired)
    sweep.set("moved", 0.02, fired)
    sweep.set("last", 0.1, fired)
    sweep.clear("cleared")
    sweep.clear("never-set")  # nothing to forget: no error
    sweep.set("moved", 0.06, fired)
    await fired.wait("last")
    assert "cleared" not in fired.at
    assert fired.at["moved"] - started >= 0.06


async def test_a_failing_callback_does_not_keep_the_others_from_firing(
        caplog: pytest.LogCaptureFixture) -> None:
    sweep, fired = Sweep(0.01), Fired()

    def broken(key: str) -> None:
        raise RuntimeError("boom")

    sweep.set("broken", 0.01, broken)
    sweep.set("fine", 0.01, fired)
    await fired.wait("fine")
    assert "a deadline callback failed" in caplog.text


async def test_the_timer_stops_when_no_deadline_is_left() -> None:
    sweep, fired = Sweep(0.01), Fired()
    sweep.set("a", 0.01, fired)
    await fired.wait("a")
    # the run that found nothing left does not arm the timer again
    await wait_until(lambda: sweep._timer is None, timeout=5)


def test_ticks_and_sweeps() -> None:
    assert tick_for(10.0, 5.0) == MAX_TICK
    assert tick_for(10.0, 0.1) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="positive"):
        Sweep(0)
    loop = asyncio.new_event_loop()
    try:
        assert sweep_of(loop, "headers", 0.05) is sweep_of(loop, "headers", 0.05)
        assert sweep_of(loop, "headers", 0.05) is not sweep_of(loop, "keep-alive", 0.05)
    finally:
        loop.close()


# ------------------------------------------------------------- the ingress's request deadline


async def test_a_request_deadline_that_passes_raises_timeout_error() -> None:
    sweep = Sweep(0.01)
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(TimeoutError):
        with _Deadline(sweep, 0.02) as deadline:
            await asyncio.Event().wait()  # never set: only the deadline ends the wait
    assert deadline.expired
    assert task.cancelling() == 0  # its cancellation is taken back
    assert deadline not in sweep


async def test_a_request_done_in_time_leaves_nothing_on_the_sweep() -> None:
    sweep = Sweep(0.01)
    with _Deadline(sweep, 5.0) as deadline:
        assert deadline in sweep
    assert deadline not in sweep  # cleared at exit: it cannot cancel the task later
    assert not deadline.expired


async def test_a_moved_request_deadline_does_not_fire_at_its_first_time() -> None:
    sweep, fired = Sweep(0.01), Fired()
    with _Deadline(sweep, 0.02) as deadline:
        deadline.move(5.0)
        sweep.set("later", 0.06, fired)  # due after the first time, on the same timer
        await fired.wait("later")
    assert not deadline.expired


async def test_a_cancellation_from_elsewhere_is_not_turned_into_a_timeout() -> None:
    sweep = Sweep(0.01)
    entered = asyncio.Event()
    deadlines: list[_Deadline] = []

    async def request() -> None:
        with _Deadline(sweep, 5.0) as deadline:
            deadlines.append(deadline)
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(request())
    await entered.wait()
    deadlines[0]._expire()  # what the sweep calls when due ...
    task.cancel()           # ... and a cancellation of the task (a shutdown) at once
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_body_that_swallows_the_cancellation_gets_no_timeout_error() -> None:
    sweep = Sweep(0.01)
    task = asyncio.current_task()
    assert task is not None
    with _Deadline(sweep, 0.02) as deadline:
        with contextlib.suppress(asyncio.CancelledError):  # as some client libraries do
            await asyncio.Event().wait()
    assert deadline.expired
    assert task.cancelling() == 0
