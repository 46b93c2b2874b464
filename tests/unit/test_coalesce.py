"""Coalescer: concurrent submits share sends, each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import anyio
import anyio.lowlevel
import pytest

from streamflow.coalesce import Coalescer

pytestmark = pytest.mark.anyio


async def until(condition: Callable[[], object]) -> None:
    """Let other tasks run until ``condition()`` holds."""
    for _ in range(10_000):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never held")


class Recorder:
    """A send that answers ``item * 10`` and refuses negative items one by one."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: anyio.Event | None = None

    async def send(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(items)
        if self.gate is not None:
            await self.gate.wait()
        await anyio.lowlevel.checkpoint()  # a round trip: others arrive meanwhile
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_a_lone_caller_sends_at_once() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send)
    for i in range(5):
        assert await coalescer.submit(i) == i * 10
    assert recorder.batches == [[0], [1], [2], [3], [4]]


async def test_concurrent_callers_share_sends_and_get_their_own_answers() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, max_items=64)
    results: dict[int, int | str] = {}

    async def call(i: int) -> None:
        try:
            results[i] = await coalescer.submit(i)
        except ValueError as exc:
            results[i] = str(exc)

    async with anyio.create_task_group() as tg:
        for i in range(-5, 495):
            tg.start_soon(call, i)
    assert results == {i: f"bad {i}" if i < 0 else i * 10 for i in range(-5, 495)}
    assert sum(len(b) for b in recorder.batches) == 500
    assert max(len(b) for b in recorder.batches) == 64
    assert len(recorder.batches) < 20


async def test_a_batch_is_bounded_by_bytes_and_the_first_item_always_goes() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, max_bytes=100)
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(coalescer.submit, i, 40)
        tg.start_soon(coalescer.submit, 99, 500)
    assert sorted(x for b in recorder.batches for x in b) == [*range(10), 99]
    for batch in recorder.batches:
        assert len(batch) == 1 or 40 * len(batch) <= 100


async def test_a_failed_send_reaches_exactly_the_callers_of_its_batch() -> None:
    calls = 0

    async def send(items: list[int]) -> Sequence[int]:
        nonlocal calls
        calls += 1
        await anyio.lowlevel.checkpoint()
        if 13 in items:
            raise ConnectionError("lost")
        return items

    coalescer = Coalescer(send, max_items=4)
    outcomes: dict[int, object] = {}

    async def call(i: int) -> None:
        try:
            outcomes[i] = await coalescer.submit(i)
        except ConnectionError:
            outcomes[i] = "lost"

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(call, i)
    lost = [i for i, o in outcomes.items() if o == "lost"]
    assert 13 in lost and 1 <= len(lost) <= 4
    assert all(outcomes[i] == i for i in outcomes if i not in lost)


async def test_a_cancelled_waiter_leaves_the_queue_and_the_rest_go_on() -> None:
    recorder = Recorder()
    recorder.gate = anyio.Event()
    coalescer = Coalescer(recorder.send)
    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await coalescer.submit(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, 0)
        await until(lambda: recorder.batches)  # 0 is in flight, held at the gate
        tg.start_soon(call, 1)
        victim = anyio.CancelScope()

        async def cancelled_call() -> None:
            with victim:
                await coalescer.submit(2)

        tg.start_soon(cancelled_call)
        tg.start_soon(call, 3)
        await until(lambda: coalescer.waiting == 3)
        victim.cancel()
        await until(lambda: coalescer.waiting == 2)
        recorder.gate.set()
    assert results == {0: 0, 1: 10, 3: 30}
    assert [x for b in recorder.batches for x in b] == [0, 1, 3]


async def test_the_caller_that_sends_is_shielded_for_its_batchmates() -> None:
    recorder = Recorder()
    recorder.gate = anyio.Event()
    coalescer = Coalescer(recorder.send)
    results: dict[int, int] = {}
    leader = anyio.CancelScope()

    async def lead() -> None:
        with leader:
            await coalescer.submit(0)

    async def call(i: int) -> None:
        results[i] = await coalescer.submit(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)
        await until(lambda: recorder.batches)
        tg.start_soon(call, 1)
        await until(lambda: coalescer.waiting == 1)
        leader.cancel()  # the leader's send runs on; 1 is sent when it ends
        recorder.gate.set()
    assert results == {1: 10}
    assert [x for b in recorder.batches for x in b] == [0, 1]


async def test_an_asyncio_timeout_on_the_sending_caller_spares_its_batchmates() -> None:
    first, second = anyio.Event(), anyio.Event()
    batches: list[list[int]] = []

    async def send(items: list[int]) -> Sequence[int]:
        batches.append(items)
        await (first if len(batches) == 1 else second).wait()
        return [i * 10 for i in items]

    coalescer = Coalescer(send)
    results: dict[int, object] = {}

    async def lead() -> None:
        try:
            async with asyncio.timeout(0.05):  # native cancellation, as the webhook ingress uses
                results[0] = await coalescer.submit(0)
        except TimeoutError:
            results[0] = "timed out"
            second.set()

    async def call(i: int) -> None:
        results[i] = await coalescer.submit(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, 9)  # 9 sends at once, held at the first gate
        await until(lambda: batches)
        tg.start_soon(lead)
        await until(lambda: coalescer.waiting == 1)
        tg.start_soon(call, 1)
        await until(lambda: coalescer.waiting == 2)
        first.set()  # 0 now sends [0, 1]; its caller times out while that send is in flight
    assert batches == [[9], [0, 1]]
    assert results == {9: 90, 0: "timed out", 1: 10}


async def test_several_sends_in_flight_never_send_an_item_twice() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, max_items=8, max_in_flight=3)
    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await coalescer.submit(i)

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(call, i)
    assert results == {i: i * 10 for i in range(300)}
    assert sorted(x for b in recorder.batches for x in b) == list(range(300))


async def test_a_lone_caller_sends_in_its_own_step_without_a_loop_turn() -> None:
    seen: list[tuple[bool, asyncio.Task[object] | None]] = []
    other_ran = False

    def other() -> None:
        nonlocal other_ran
        other_ran = True

    async def send(items: list[int]) -> Sequence[int]:
        seen.append((other_ran, asyncio.current_task()))
        return items

    coalescer = Coalescer(send, max_in_flight=2)
    asyncio.get_running_loop().call_soon(other)  # runs at the next loop turn
    assert await coalescer.submit(1) == 1
    assert seen == [(False, asyncio.current_task())]


async def test_the_callers_one_reply_wakes_share_the_next_send() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send)

    async def call() -> None:
        for _ in range(3):
            await coalescer.submit(1)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
    # the first caller sends alone; then each reply's callers add again and go together (no
    # batch of 1 sent by the first of them to wake, the others queued behind it)
    assert [len(b) for b in recorder.batches] == [1, 10, 10, 9]


async def test_two_sends_in_flight_carry_batches_of_even_size() -> None:
    gates = [anyio.Event() for _ in range(5)]
    batches: list[list[int]] = []

    async def send(items: list[int]) -> Sequence[int]:
        batches.append(items)
        await gates[len(batches) - 1].wait()
        return items

    coalescer = Coalescer(send, max_in_flight=2)
    async with anyio.create_task_group() as tg:
        for i in range(200):  # 0 and 1 find a slot free: each sends at once; 198 wait
            tg.start_soon(coalescer.submit, i)
        await until(lambda: coalescer.waiting == 198)
        assert batches == [[0], [1]]
        gates[0].set()
        await until(lambda: len(batches) == 3)
        # one item in flight and 198 waiting: the free slot takes ceil(199 / 2), not all 198
        assert len(batches[2]) == 100 and coalescer.waiting == 98
        for gate in gates:
            gate.set()
    # both slots free with 98 waiting: two sends of 49
    assert [len(b) for b in batches] == [1, 1, 100, 49, 49]


async def test_replies_handled_in_one_loop_turn_gather_before_the_next_send() -> None:
    gate = anyio.Event()
    batches: list[list[int]] = []

    async def send(items: list[int]) -> Sequence[int]:
        batches.append(items)
        await gate.wait()  # both sends in flight end in the same loop turn
        return items

    coalescer = Coalescer(send, max_in_flight=2)

    async def call(i: int) -> None:
        for _ in range(3):
            await coalescer.submit(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(call, i)
        for sent in (2, 4, 6, 8):
            await until(lambda sent=sent: len(batches) >= sent)  # type: ignore[misc]
            gate.set()
            gate = anyio.Event()
        gate.set()  # sends made past the expected rounds end too
    # rounds: 2 lone callers (18 wait: no slot free), then 2 x 10 twice: the callers of the
    # second reply are not left behind a send of the first reply's callers (nor split 5 + 5)
    assert [len(b) for b in batches] == [1, 1, 10, 10, 10, 10, 9, 9]


async def test_callers_all_cancelled_while_waiting_make_no_empty_send() -> None:
    recorder = Recorder()
    recorder.gate = anyio.Event()
    coalescer = Coalescer(recorder.send)
    async with anyio.create_task_group() as tg:
        tg.start_soon(coalescer.submit, 0)
        await until(lambda: recorder.batches)  # 0 in flight, held at the gate
        with anyio.CancelScope() as waiting:
            waiting.cancel()  # both are cancelled at their first wait
            await coalescer.submit(1)
        with anyio.move_on_after(0):
            await coalescer.submit(2)
        assert coalescer.waiting == 0
        recorder.gate.set()
    await coalescer.submit(3)
    assert recorder.batches == [[0], [3]]


def test_a_flush_another_event_loop_never_ran_does_not_hold_the_next_loop() -> None:
    recorder = Recorder()
    recorder.gate = anyio.Event()
    coalescer = Coalescer(recorder.send, max_in_flight=2)

    tasks: list[asyncio.Task[int]] = []

    async def strand() -> None:
        loop = asyncio.get_running_loop()
        tasks.append(loop.create_task(coalescer.submit(1)))  # sends at once, held at the gate
        tasks.append(loop.create_task(coalescer.submit(2)))  # at once too: a slot is free
        await asyncio.sleep(0)
        tasks.append(loop.create_task(coalescer.submit(3)))  # no slot free: waits
        await asyncio.sleep(0)
        tasks.append(loop.create_task(coalescer.submit(4)))
        await asyncio.sleep(0)
        loop.stop()  # before any reply: the loop is abandoned

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # its tasks die pending
    started = loop.create_task(strand())
    loop.run_forever()
    assert started.done()
    assert coalescer.waiting == 2
    loop.close()

    async def again() -> object:
        recorder.gate = None
        waiting = asyncio.ensure_future(coalescer.submit(5))  # finds no slot free: waits
        second = asyncio.ensure_future(coalescer.submit(6))
        for _ in range(100):
            await asyncio.sleep(0)
        done = waiting.done() and second.done()
        waiting.cancel()
        second.cancel()
        return done and (waiting.result(), second.result())

    assert asyncio.run(again()) == (50, 60)
