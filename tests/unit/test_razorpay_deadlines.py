"""Sweep: deadlines as dict entries, fired by one periodic timer; set, moved, cleared."""

from __future__ import annotations

import asyncio
import time

import pytest

from consumers.razorpay.deadlines import MAX_TICK, Sweep, sweep_of, tick_for
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
