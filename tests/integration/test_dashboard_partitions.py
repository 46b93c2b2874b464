"""The dashboard over a partitioned queue (Starlette's test client, real Redis): listed once
with its totals, a per-partition table, jobs of every partition listed and paged, one
partition filtered, a job of any partition opened and acted on."""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator

import anyio
import pytest

pytest.importorskip("jinja2", reason="the dashboard extra is not installed")
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient
from streamflow import Job, JobSpec, Queue, StreamflowSettings, Worker
from streamflow.dashboard import create_app
from streamflow.partitions import partition_for
from tests.integration.test_dashboard import csrf_of, run
from tests.support import running, wait_until

PARTS = 3


@pytest.fixture
def settings(redis_url: str) -> StreamflowSettings:
    return StreamflowSettings.from_url(redis_url, prefix=f"dp{uuid.uuid4().hex[:10]}")


@pytest.fixture
def client(settings: StreamflowSettings, queue_name: str) -> Iterator[TestClient]:
    async def go() -> None:
        async with Queue(queue_name, settings=settings, partitions=PARTS) as q:
            await q.add_bulk([JobSpec("charge", {"n": i}, job_id=f"evt_{i}")
                              for i in range(60)])
            await q.add("later", {"n": 99}, job_id="evt_later", delay=3600)

    run(go)
    with TestClient(create_app(settings=settings), base_url="http://127.0.0.1") as client:
        yield client


def _ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]+)"', html)


def test_overview_shows_a_partitioned_queue_once_with_totals(
        client: TestClient, queue_name: str) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.text.count(f'<tr data-queue="{queue_name}"') == 1
    assert f"{queue_name}#" not in page.text
    row = page.text.split(f'<tr data-queue="{queue_name}"', 1)[1].split("</tr>", 1)[0]
    assert re.search(r'data-f="waiting">60<', row), row
    assert re.search(r'data-f="delayed">1<', row), row
    assert "3 partitions" in row
    api = client.get("/api/overview").json()
    assert [r["name"] for r in api["queues"]] == [queue_name]
    assert api["queues"][0]["waiting"] == 60 and api["queues"][0]["partitions"] == PARTS


def test_queue_page_has_a_partition_table_and_pages_over_every_partition(
        client: TestClient, queue_name: str) -> None:
    page = client.get(f"/queues/{queue_name}")
    table = page.text.split('id="partitions"', 1)[1].split("</table>", 1)[0]
    expected = [sum(1 for i in range(60) if partition_for(f"evt_{i}", PARTS) == p)
                for p in range(PARTS)]
    for p in range(PARTS):
        row = table.split(f'data-partition="{p}"', 1)[1].split("</tr>", 1)[0]
        assert f'data-f="waiting">{expected[p]}<' in row, row
    seen = _ids(page.text)
    assert len(seen) == 50
    for _ in range(5):
        more = re.search(r'id="next-page" href="([^"]+)"', page.text)
        if more is None:
            break
        page = client.get(more.group(1).replace("&amp;", "&"))
        seen += _ids(page.text)
    assert sorted(seen) == sorted(f"evt_{i}" for i in range(60))
    one = client.get(f"/queues/{queue_name}?state=waiting&partition=1")
    assert sorted(_ids(one.text)) == sorted(
        f"evt_{i}" for i in range(60) if partition_for(f"evt_{i}", PARTS) == 1)
    assert '<option value="1" selected>' in one.text
    assert '?state=dead&partition=1"' in one.text, "the tabs keep the partition"
    api = client.get(f"/api/queues/{queue_name}").json()
    assert [p["waiting"] for p in api["partitions"]] == expected


def test_a_job_of_any_partition_opens_and_its_actions_run_there(
        client: TestClient, settings: StreamflowSettings, queue_name: str) -> None:
    page = client.get(f"/queues/{queue_name}?state=delayed")
    link = re.search(r'class="jobid" href="([^"]+)"', page.text)
    assert link is not None
    home = partition_for("evt_later", PARTS)
    assert f"partition={home}" in link.group(1)
    job = client.get(link.group(1).replace("&amp;", "&"))
    assert job.status_code == 200
    assert f"partition {home}" in job.text and 'id="action-promote"' in job.text
    plain = client.get(f"/queues/{queue_name}/jobs/evt_later")  # no hint: found anyway
    assert plain.status_code == 200 and f"partition {home}" in plain.text
    token = csrf_of(client)
    done = client.post(f"/queues/{queue_name}/actions/job", data={
        "csrf": token, "action": "promote", "job_id": "evt_later",
        "partition": str(home)})
    assert done.status_code == 200 and "evt_later promoted" in done.text
    assert 'id="job-state">waiting<' in done.text

    async def state() -> str | None:
        async with Queue(queue_name, settings=settings) as q:
            view = await q.job("evt_later")
            return view.state if view else None

    assert run(state) == "waiting"
    removed = client.post(f"/queues/{queue_name}/actions/job", data={
        "csrf": token, "action": "remove", "job_id": "evt_7"})
    assert "evt_7 removed" in removed.text
    assert client.get(f"/queues/{queue_name}/jobs/evt_7").status_code == 200  # status only
    assert "evt_7" not in _ids(client.get(
        f"/queues/{queue_name}?state=waiting&partition={partition_for('evt_7', PARTS)}").text)


def test_workers_page_shows_a_worker_of_every_partition_once(
        client: TestClient, settings: StreamflowSettings, queue_name: str) -> None:
    settings.worker.block_ms = 200
    settings.worker.heartbeat_interval = 0.2
    release = anyio.Event()

    async def hold(job: Job) -> None:
        await release.wait()

    async def go() -> str:
        async with Queue(queue_name, settings=settings) as q:
            worker = Worker(queue_name, hold, settings=settings, consumer="w-parts",
                            concurrency=PARTS * 2)
            async with running(worker):
                await wait_until(lambda: _busy(q, PARTS * 2))
                html = (await anyio.to_thread.run_sync(client.get, "/workers")).text
                release.set()
            return html

    html = run(go)
    rows = re.findall(r"<tr[^>]*>(?:(?!</tr>).)*w-parts(?:(?!</tr>).)*</tr>", html, re.S)
    assert len(rows) == 1, rows
    assert re.search(rf">\s*{PARTS * 2}\s*<", rows[0]), rows[0]


async def _busy(q: Queue, count: int) -> bool:
    return (await q.counts())["pending"] == count


def test_partition_rows_count_held_jobs_and_locked_keys(
        settings: StreamflowSettings, queue_name: str) -> None:
    async def go() -> None:  # the later jobs of a key wait behind its first: held
        async with Queue(queue_name, settings=settings, partitions=PARTS, ordered=True) as q:
            await q.add_bulk([JobSpec("charge", {"n": i}, key="pay_H") for i in range(3)])
            await q.add("later", {"n": 9}, key="pay_D", delay=3600)

    run(go)
    with TestClient(create_app(settings=settings), base_url="http://127.0.0.1") as client:
        rows = client.get(f"/api/queues/{queue_name}").json()["partitions"]
    home, delayed_home = partition_for("pay_H", PARTS), partition_for("pay_D", PARTS)
    assert [row["held"] for row in rows] == [2 if p == home else 0 for p in range(PARTS)]
    assert [row["locked_keys"] for row in rows] == [  # a delayed job holds its key too
        (p == home) + (p == delayed_home) for p in range(PARTS)]
    assert sum(row["delayed"] for row in rows) == rows[delayed_home]["delayed"] == 1
