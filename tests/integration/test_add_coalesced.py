"""Concurrent single adds share script calls, and every caller still gets its own answer."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from streamflow import Queue, StreamflowSettings
from streamflow.errors import DurabilityError, PayloadError

pytestmark = pytest.mark.anyio

CALLERS = 500


async def test_500_concurrent_callers_each_get_their_own_answer(
        redis_url: str, queue_name: str) -> None:
    settings = StreamflowSettings.from_url(redis_url)
    settings.queue.replicated_timeout = 0.05  # no replica: every WAIT gives up
    rng = random.Random(7)
    kinds = (["plain"] * 350 + ["dup"] * 60 + ["bad"] * 30 + ["replicated"] * 30
             + ["high"] * 30)
    rng.shuffle(kinds)
    dup_ids = {i: f"evt_{n // 2}" for n, i in enumerate(
        i for i, kind in enumerate(kinds) if kind == "dup")}
    outcomes: dict[int, Any] = {}

    async with Queue(queue_name, settings=settings) as q:
        async def call(i: int, kind: str) -> None:
            try:
                if kind == "plain":
                    outcomes[i] = await q.add("n", {"i": i})
                elif kind == "high":
                    outcomes[i] = await q.add("n", {"i": i}, priority="high")
                elif kind == "dup":  # 30 ids, each added by two callers at once
                    outcomes[i] = await q.add("n", {"i": i}, job_id=dup_ids[i])
                elif kind == "bad":
                    outcomes[i] = await q.add("n", {"i": i, "x": float("nan")})
                else:
                    outcomes[i] = await q.add("n", {"i": i}, job_id=f"rep_{i}",
                                              durability="replicated")
            except (PayloadError, DurabilityError) as exc:
                outcomes[i] = exc

        async with anyio.create_task_group() as tg:
            for i, kind in enumerate(kinds):
                tg.start_soon(call, i, kind)

        sends = q._enqueuer._coalescers[False].sends
        by_kind: dict[str, list[tuple[int, Any]]] = {}
        for i, kind in enumerate(kinds):
            by_kind.setdefault(kind, []).append((i, outcomes[i]))
        assert all(isinstance(o, PayloadError) for _, o in by_kind["bad"])
        assert all(isinstance(o, DurabilityError) for _, o in by_kind["replicated"])
        winners: dict[str, int] = {}
        for i, outcome in by_kind["dup"]:
            assert outcome in (dup_ids[i], None)
            if outcome is not None:
                assert outcome not in winners
                winners[outcome] = i
        assert len(winners) == 30

        normal = {f"normal:{e.decode()}": f
                  for e, f in await q.client.xrange(q.keys.level("normal"))}
        high = {f"high:{e.decode()}": f
                for e, f in await q.client.xrange(q.keys.level("high"))}
        for i, outcome in by_kind["plain"]:
            assert b'"i":%d}' % i in normal[outcome][b"d"]
        for i, outcome in by_kind["high"]:
            assert b'"i":%d}' % i in high[outcome][b"d"]
        by_id = {f[b"i"].decode(): f for f in normal.values() if b"i" in f}
        for job_id, i in winners.items():
            assert b'"i":%d}' % i in by_id[job_id][b"d"]
        # the replicated jobs reached the master (only the replica's confirmation is missing)
        assert {f"rep_{i}" for i, _ in by_kind["replicated"]} <= set(by_id)
        assert len(normal) == 350 + 30 + 30 and len(high) == 30
        assert sends < CALLERS - 100  # the callers shared script calls
        await q.obliterate(force=True)


async def test_one_caller_at_a_time_sends_each_add_alone(redis_url: str,
                                                         queue_name: str) -> None:
    async with Queue(queue_name, url=redis_url) as q:
        ids = [await q.add("n", {"i": i}) for i in range(5)]
        assert q._enqueuer._coalescers[False].sends == 5
        assert len(set(ids)) == 5
        await q.obliterate(force=True)
