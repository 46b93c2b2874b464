"""A partitioned queue in a real browser: listed once with its totals, its partition table,
one partition filtered, and a dead job of a partition other than 0 opened and retried."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow import JobSpec, Queue
from streamflow.dashboard.jobs_api import BROWSE
from streamflow.partitions import partition_for
from tests.browser.conftest import (
    Stack,
    counts,
    delete_key,
    job_state_is,
    reload_until,
    run,
    wait_for,
)

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')").expect

pytestmark = pytest.mark.skipif(not BROWSE, reason="job browsing API not on this branch")
PARTS = 3


def _job_id() -> str:
    """A job id whose partition is not 0 (the plain layout's keys are never read for it)."""
    return next(f"evt_dead_{i}" for i in range(100) if partition_for(f"evt_dead_{i}", PARTS))


def _seed(stack: Stack, queue: str, dead_id: str) -> None:
    async def go() -> None:
        async with Queue(queue, settings=stack.settings, partitions=PARTS) as q:
            await q.add_bulk([JobSpec("noop", {"i": i}, job_id=f"evt_{i}", delay=3600)
                              for i in range(9)])
            await q.client.set(f"{queue}:provider-down", "1")
            await q.add("provider.call", {"payment_id": "pay_42"}, job_id=dead_id, attempts=1)

    run(go)


async def _add_delayed(stack: Stack, queue: str, job_id: str) -> None:
    async with Queue(queue, settings=stack.settings) as q:
        await q.add("noop", {}, job_id=job_id, delay=3600)


def test_open_a_partitioned_queue_and_retry_a_dead_job_of_one_partition(
        stack: Stack, page: Any, queue_name: str) -> None:
    dead_id = _job_id()
    home = partition_for(dead_id, PARTS)
    _seed(stack, queue_name, dead_id)
    stack.worker(queue_name)
    wait_for(lambda: counts(stack, queue_name)["dead"] == 1, timeout=30)
    url = stack.dashboard()

    page.goto(url + "/")
    row = page.locator(f'tr[data-queue="{queue_name}"]')
    expect(row).to_have_count(1)
    expect(row.locator('[data-f="delayed"]')).to_have_text("9")
    expect(row.locator('[data-f="dead"]')).to_have_text("1")
    expect(row.locator('[data-f="partitions"]')).to_have_text("3 partitions")
    row.locator("a.qname").click()

    table = page.locator("#partitions")
    expect(table.locator("tbody tr")).to_have_count(PARTS)
    expect(table.locator(f'tr[data-partition="{home}"] [data-f="dead"]')).to_have_text("1")
    delayed_home = sum(1 for i in range(9) if partition_for(f"evt_{i}", PARTS) == home)
    expect(table.locator(f'tr[data-partition="{home}"] [data-f="delayed"]')).to_have_text(
        str(delayed_home))

    page.evaluate("window.__marker = 1")  # gone if the page reloads
    extra = next(f"evt_x{i}" for i in range(100) if partition_for(f"evt_x{i}", PARTS) == home)
    run(lambda: _add_delayed(stack, queue_name, extra))
    expect(table.locator(f'tr[data-partition="{home}"] [data-f="delayed"]')).to_have_text(
        str(delayed_home + 1))
    assert page.evaluate("window.__marker") == 1, "the table refreshed without a reload"

    page.locator("#tabs [data-tab=delayed]").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(10)
    page.locator("#partition-filter").select_option(str(home))
    page.locator("form.filters button").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(delayed_home + 1)
    expect(page.locator(f'#jobs tr[data-job="{extra}"]')).to_have_attribute(
        "data-partition", str(home))

    page.goto(f"{url}/queues/{queue_name}?state=dead")
    page.get_by_role("link", name=dead_id).click()
    expect(page.locator("#job-state")).to_have_text("dead")
    expect(page.locator("#job-partition")).to_have_text(f"partition {home}")
    expect(page.locator("#error-text")).to_contain_text("provider answered 503")

    delete_key(stack, queue_name, f"{queue_name}:provider-down")
    page.locator("#action-retry").click()
    expect(page.locator("#flash")).to_contain_text(dead_id)
    reload_until(page, job_state_is("completed"), "the retried job did not complete")
    expect(page.locator("#result")).to_contain_text("pay_42")
    expect(page.locator("#job-partition")).to_have_text(f"partition {home}")
    assert counts(stack, queue_name)["dead"] == 0
