"""The on-call path in a real browser: overview, a dead job, retry, pause, token, read-only."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from streamflow.dashboard.jobs_api import BROWSE
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

JOB_API = pytest.mark.skipif(not BROWSE, reason="job browsing API not on this branch")


def add_jobs(stack: Stack, queue: str, count: int, **kwargs: Any) -> None:
    async def go() -> None:
        async with stack.queue(queue) as q:
            await q.add_bulk([("noop", {"i": i}) for i in range(count)], **kwargs)

    run(go)


def dead_job(stack: Stack, queue: str, job_id: str, data: dict[str, Any]) -> None:
    """A job that fails once (the provider is down) and is dead-lettered."""
    async def go() -> None:
        async with stack.queue(queue) as q:
            await q.client.set(f"{queue}:provider-down", "1")
            await q.add("provider.call", data, job_id=job_id, attempts=1)

    run(go)
    stack.worker(queue)
    wait_for(lambda: counts(stack, queue)["dead"] == 1)


def test_overview_lists_the_queue_and_refreshes_without_reload(
        stack: Stack, page: Any, queue_name: str) -> None:
    add_jobs(stack, queue_name, 3)
    url = stack.dashboard()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url + "/")
    row = page.locator(f'tr[data-queue="{queue_name}"]')
    expect(row.locator('[data-f="waiting"]')).to_have_text("3")
    expect(row.locator('[data-f="state"]')).to_contain_text("running")
    page.evaluate("window.__marker = 1")  # gone if the page reloads

    add_jobs(stack, queue_name, 5)
    expect(row.locator('[data-f="waiting"]')).to_have_text("8")
    assert page.evaluate("window.__marker") == 1
    assert requested and all(r.startswith(url) for r in requested), requested  # offline


def test_open_a_dead_job_retry_it_and_watch_it_complete(
        stack: Stack, page: Any, queue_name: str) -> None:
    dead_job(stack, queue_name, "evt_dead_1",
             {"payment_id": "pay_777", "email": "asha@example.com", "amount": 49900})
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}?state=dead")
    expect(page.locator("#dead-count")).to_have_text("1")
    page.get_by_role("link", name="evt_dead_1").click()

    expect(page.locator("#job-state")).to_have_text("dead")
    expect(page.locator("#error-text")).to_contain_text("provider answered 503")
    expect(page.locator("#traceback")).to_contain_text("ConnectionError")
    payload = page.locator("#payload")
    expect(payload).to_contain_text("pay_777")
    expect(payload).not_to_contain_text("asha@example.com")  # masked by default

    delete_key(stack, queue_name, f"{queue_name}:provider-down")  # fix the cause
    page.locator("#action-retry").click()
    expect(page.locator("#flash")).to_contain_text("evt_dead_1")
    reload_until(page, job_state_is("completed"), "the retried job did not complete")
    expect(page.locator("#result")).to_contain_text("pay_777")
    assert counts(stack, queue_name)["dead"] == 0


def test_pause_and_resume_a_queue(stack: Stack, page: Any, queue_name: str) -> None:
    add_jobs(stack, queue_name, 2)
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}")
    page.locator("#pause").click()
    expect(page.locator("#flash")).to_have_text(f"{queue_name} paused")
    expect(page.locator('[data-f="state"]').first).to_contain_text("paused")
    assert counts(stack, queue_name)["paused"] is True

    page.locator("#resume").click()
    expect(page.locator("#flash")).to_have_text(f"{queue_name} resumed")
    expect(page.locator('[data-f="state"]').first).to_contain_text("running")
    assert counts(stack, queue_name)["paused"] is False


def test_drain_needs_the_queue_name_typed(stack: Stack, page: Any, queue_name: str) -> None:
    add_jobs(stack, queue_name, 4)
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}")
    page.locator("#drain-confirm").fill("wrong")
    page.locator("#drain").click()
    expect(page.locator("#flash")).to_contain_text("type the queue name")
    assert counts(stack, queue_name)["waiting"] == 4

    page.locator("#drain-confirm").fill(queue_name)
    page.locator("#drain").click()
    expect(page.locator("#flash")).to_contain_text("4 waiting and delayed jobs removed")
    assert counts(stack, queue_name)["waiting"] == 0


def test_log_in_with_a_token_and_be_refused_without_it(
        stack: Stack, page: Any, queue_name: str) -> None:
    add_jobs(stack, queue_name, 1)
    url = stack.dashboard("--token", "s3cret-token-for-tests")
    assert httpx.get(f"{url}/api/overview").status_code == 401
    assert httpx.post(f"{url}/queues/{queue_name}/actions/pause").status_code == 401

    page.goto(url + "/")
    expect(page).to_have_url(f"{url}/login?next=/")
    page.locator('input[name="token"]').fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("wrong token")
    expect(page.locator(f'tr[data-queue="{queue_name}"]')).to_have_count(0)

    page.locator('input[name="token"]').fill("s3cret-token-for-tests")
    page.locator('input[name="name"]').fill("asha")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(f'tr[data-queue="{queue_name}"]')).to_have_count(1)
    bearer = {"Authorization": "Bearer s3cret-token-for-tests"}
    assert httpx.get(f"{url}/api/overview", headers=bearer).status_code == 200


def test_read_only_dashboard_shows_no_action(stack: Stack, page: Any, queue_name: str) -> None:
    dead_job(stack, queue_name, "evt_ro_1", {"payment_id": "pay_ro"})
    url = stack.dashboard("--read-only")
    page.goto(f"{url}/queues/{queue_name}?state=dead")
    expect(page.locator("#read-only")).to_be_visible()
    expect(page.get_by_role("link", name="evt_ro_1")).to_be_visible()
    assert page.locator("form[method=post]").count() == 0
    page.get_by_role("link", name="evt_ro_1").click()
    expect(page.locator("#job-state")).to_have_text("dead")
    assert page.locator("button").count() == 0
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    refused = httpx.post(f"{url}/queues/{queue_name}/actions/retry-dead",
                         data={"csrf": cookies["sfdash_csrf"]}, cookies=cookies)
    assert refused.status_code == 403
    assert counts(stack, queue_name)["dead"] == 1

    page.get_by_role("link", name="Workers").click()
    consumer = page.locator("#consumers tbody tr").first
    expect(consumer).to_contain_text(socket.gethostname())
    expect(consumer).to_contain_text(str(stack.processes[0].pid))  # the worker's pid


def test_a_refused_action_shows_the_reason_not_a_trace(
        stack: Stack, page: Any, queue_name: str) -> None:
    add_jobs(stack, queue_name, 1)
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}")
    page.evaluate("document.querySelector('#queue-actions input[name=csrf]').value = 'forged'")
    page.locator("#pause").click()
    expect(page.locator("#message")).to_contain_text("CSRF token")
    assert counts(stack, queue_name)["paused"] is False


def test_sensitive_fields_shown_only_when_asked(stack: Stack, page: Any,
                                                queue_name: str) -> None:
    dead_job(stack, queue_name, "evt_pii", {"payment_id": "pay_pii", "email": "z@example.com",
                                           "card": {"last4": "4242", "network": "Visa"}})
    url = stack.dashboard("--show-sensitive")
    page.goto(f"{url}/queues/{queue_name}?state=dead")
    page.get_by_role("link", name="evt_pii").click()
    expect(page.locator("#payload")).to_contain_text("z@example.com")
    expect(page.locator("#payload")).to_contain_text("4242")


def add_indexed(stack: Stack, queue: str, payments: list[str]) -> None:
    async def go() -> None:
        async with stack.queue(queue) as q:
            for payment in payments:
                await _any(q).add("payment.capture", {"payment_id": payment, "amount": 100},
                                  job_id=f"evt_{payment}", index={"payment_id": payment})

    run(go)


def _any(value: Any) -> Any:
    return value  # the job API's arguments (index=...) are not on every streamflow


@JOB_API
def test_find_a_job_by_payment_id(stack: Stack, page: Any, queue_name: str) -> None:
    add_indexed(stack, queue_name, ["pay_A", "pay_B", "pay_C"])
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}")
    page.locator("#search").fill("payment_id = pay_B")
    page.locator("#search").press("Enter")
    expect(page.locator("#result-count")).to_contain_text("1 job")
    page.get_by_role("link", name="evt_pay_B").click()
    expect(page.locator("#job-state")).to_have_text("waiting")
    expect(page.locator("#payload")).to_contain_text("pay_B")


@JOB_API
def test_edit_and_retry_keeps_the_dead_entry_and_records_who(
        stack: Stack, page: Any, queue_name: str) -> None:
    async def go() -> None:
        async with stack.queue(queue_name) as q:
            await q.add("payment.capture", {"payment_id": "pay_E", "amount": 0,
                                            "email": "e@example.com"}, job_id="evt_E")

    run(go)
    stack.worker(queue_name)
    wait_for(lambda: counts(stack, queue_name)["dead"] == 1)
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}?state=dead")
    page.get_by_role("link", name="evt_E").click()
    expect(page.locator("#reason")).to_have_text("discarded")
    edited = page.locator("#edit-data").input_value().replace('"amount": 0', '"amount": 4990')
    assert "e@example.com" not in edited  # masked in the form too
    page.locator("#edit-data").fill(edited)
    page.locator("#edit-actor").fill("asha")
    page.locator("#action-edit").click()
    expect(page.locator("#flash")).to_contain_text("edited payload")
    expect(page.locator("#audit .actor")).to_contain_text("asha")
    expect(page.locator("#audit .changes")).to_contain_text("amount: 0 → 4990")

    # the kept dead letter shares the job id: watch the completed tab for the re-run
    page.goto(f"{url}/queues/{queue_name}?state=completed")
    reload_until(page, lambda page: page.locator('#jobs tr[data-job="evt_E"]').count() > 0,
                 "the edited job did not complete")
    assert counts(stack, queue_name)["dead"] == 1  # the original dead letter is kept

    async def completed() -> Any:
        async with stack.queue(queue_name) as q:
            return (await _any(q).jobs("completed")).jobs

    [done] = run(completed)
    assert done.result == {"amount": 4990, "email": "e@example.com"}  # unmasked on retry


@JOB_API
def test_job_tabs_page_by_cursor_and_filter_by_name(
        stack: Stack, page: Any, queue_name: str) -> None:
    add_jobs(stack, queue_name, 60)
    add_indexed(stack, queue_name, ["pay_1"])
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}?state=waiting")
    expect(page.locator("#jobs tbody tr")).to_have_count(50)
    page.locator("#next-page").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(11)
    expect(page.locator("#next-page")).to_have_count(0)
    page.goto(f"{url}/queues/{queue_name}?state=waiting&name=payment.capture")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)


@JOB_API
def test_promote_a_delayed_job(stack: Stack, page: Any, queue_name: str) -> None:
    async def go() -> None:
        async with stack.queue(queue_name) as q:
            await q.add("noop", {}, job_id="evt_later", delay=3600)

    run(go)
    url = stack.dashboard()
    page.goto(f"{url}/queues/{queue_name}/jobs/evt_later")
    expect(page.locator("#job-state")).to_have_text("delayed")
    page.locator("#action-promote").click()
    expect(page.locator("#flash")).to_have_text("job evt_later promoted")
    expect(page.locator("#job-state")).to_have_text("waiting")
