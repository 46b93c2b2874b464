"""Business-key lookup: ``add(..., index={...})`` and ``index_fields``, then ``Queue.find``."""

from __future__ import annotations

import pytest

from streamflow import Discard, Job, JobSpec, Queue, Worker
from streamflow.errors import InvalidJob
from tests.support import fast_settings, running, wait_until

pytestmark = pytest.mark.anyio


async def test_find_lists_every_job_that_carried_the_key_with_its_state(
        redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, attempts=1, index_fields=["payment_id"])

    async def handler(job: Job) -> str:
        if job.name == "refund.failed":
            raise Discard("gateway said no")
        return "ok"

    async with Queue(queue_name, settings=settings) as q:
        captured = await q.add("payment.captured", {"payment_id": "pay_Q1x9", "amount": 500},
                               job_id="evt_1")
        refund = await q.add("refund.failed", {"refund_id": "rfnd_1"},
                             index={"payment_id": "pay_Q1x9", "refund_id": "rfnd_1"})
        later = await q.add("payment.reminder", {"payment_id": "pay_Q1x9"}, delay=600)
        await q.add_bulk([JobSpec("payment.captured", {"payment_id": "pay_other"})])
        waiting = {v.id: v for v in await q.find("payment_id", "pay_Q1x9")}
        # newest first; adds within one millisecond tie, so compare without the order
        assert {job_id: v.state for job_id, v in waiting.items()} == {
            later: "delayed", refund: "waiting", captured: "waiting"}
        assert refund is not None
        assert waiting[refund].index == {"payment_id": "pay_Q1x9", "refund_id": "rfnd_1"}
        worker = Worker(queue_name, handler, settings=settings)
        async with running(worker):
            await wait_until(lambda: worker.processed + worker.failed >= 3)
            await wait_until(lambda: _dead(q))
        found = {v.id: v for v in await q.find("payment_id", "pay_Q1x9")}
        assert found[refund].state == "dead" and found[refund].error == "gateway said no"
        assert found[captured].state == "completed" and found[captured].result == "ok"
        assert found[later].state == "delayed"
        assert [v.name for v in await q.find("refund_id", "rfnd_1")] == ["refund.failed"]
        assert await q.find("payment_id", "pay_nobody") == []
        ttl = await q.client.pttl(q.keys.index("payment_id", "pay_Q1x9"))
        assert 0 < ttl <= settings.queue.index_ttl * 1000


async def _dead(q: Queue) -> bool:
    return (await q.counts())["dead"] >= 1


async def test_an_index_keeps_the_newest_jobs_only(redis_url: str, queue_name: str) -> None:
    settings = fast_settings(redis_url, index_cap=3)
    async with Queue(queue_name, settings=settings) as q:
        ids = await q.add_bulk([JobSpec("order.paid", {"n": n}, index={"order_id": "o1"})
                                for n in range(5)])
        assert {v.id for v in await q.find("order_id", "o1")} == set(ids[2:])  # the newest 3
        with pytest.raises(InvalidJob, match="index"):
            await q.add("x", {}, index={"order_id": ""})
