"""``streamflow jobs|find|logs|remove|promote|reschedule|retry|cancel|clean|metrics`` on real
Redis, through typer's CliRunner on the real app."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest

from streamflow import Queue, StreamflowSettings

pytestmark = pytest.mark.usefixtures("cli_env")




def _seed(redis_url: str, queue: str) -> tuple[list[str], str]:
    async def go() -> tuple[list[str], str]:
        async with Queue(queue, settings=StreamflowSettings.from_url(redis_url)) as q:
            ids = [i for i in await q.add_bulk([("pay", {"n": n}) for n in range(3)]) if i]
            later = await q.add("later", {"n": 9}, delay=3600)
            assert later is not None
            return ids, later

    return anyio.run(go)


def test_jobs_pages_and_json(cli: Any, redis_url: str, queue_name: str) -> None:
    ids, _ = _seed(redis_url, queue_name)
    result = cli("jobs", queue_name, "--state", "waiting", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert ids[2] in result.output and ids[1] in result.output and ids[0] not in result.output
    cursor = result.output.strip().splitlines()[-1].split("--cursor ")[1]
    result = cli("jobs", queue_name, "--state", "waiting", "--cursor", cursor, "--json")
    page = orjson.loads(result.output)
    assert [j["id"] for j in page["jobs"]] == [ids[0]]


def test_control_commands_and_refusals(cli: Any, redis_url: str, queue_name: str) -> None:
    ids, later = _seed(redis_url, queue_name)
    assert cli("remove", queue_name, ids[0]).output == f"removed {ids[0]}\n"
    assert cli("reschedule", queue_name, later, "2h").exit_code == 0
    assert cli("promote", queue_name, later).exit_code == 0
    refused = cli("promote", queue_name, later)
    assert refused.exit_code == 2
    assert "is waiting: promote applies to delayed jobs" in refused.output
    assert "Traceback" not in refused.output
    missing = cli("retry", queue_name, "no-such-job")
    assert missing.exit_code == 2 and "not found" in missing.output
    assert cli("cancel", queue_name, ids[1]).output == f"removed {ids[1]}\n"
    assert cli("clean", queue_name, "--state", "waiting", "--older-than", "0").exit_code == 2
    cleaned = cli("clean", queue_name, "--state", "delayed", "--older-than", "0", "--json")
    assert orjson.loads(cleaned.output) == {"removed": 0}
    bad = cli("retry", queue_name, "x", "--data", "{nope")
    assert bad.exit_code == 2 and "not valid JSON" in bad.output


def test_metrics_find_and_logs_when_empty(cli: Any, redis_url: str, queue_name: str) -> None:
    _seed(redis_url, queue_name)  # read commands refuse a queue that has no keys
    assert "no jobs finished" in cli("metrics", queue_name).output
    minutes = orjson.loads(cli("metrics", queue_name, "--since", "5m", "--json").output)
    assert 5 <= len(minutes) <= 6 and all(m["completed"] == 0 for m in minutes)
    assert cli("find", queue_name, "payment_id", "pay_none").exit_code == 1
    assert orjson.loads(cli("logs", queue_name, "x", "--json").output) == []
