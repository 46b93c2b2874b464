"""The single add's short paths prepare exactly what the general path does (no Redis)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from streamflow import Queue

NOW = 1_700_000_000_000
ARGS = ("name", "data", "priority", "delay", "job_id", "attempts", "backoff", "timeout",
        "track", "keep_result")


def both(**kwargs: Any) -> tuple[Any, Any]:
    """``prepare_job`` (short path where it applies) and ``_prepare`` (the general one): each a
    Prepared's fields, or the exception raised as (type, message)."""
    enqueuer = Queue("unit", url="redis://127.0.0.1:1/0")._enqueuer
    call: dict[str, Any] = {"name": "n", "data": {"a": 1}, "priority": None, "delay": None,
                            "job_id": None, "attempts": None, "backoff": None,
                            "timeout": None, "track": False, "keep_result": None, **kwargs}
    args = [call[name] for name in ARGS]
    out = []
    for prepare in (lambda: enqueuer.prepare_job(*args, NOW),
                    lambda: enqueuer._prepare(*args, NOW, None, None, [])):
        try:
            out.append(dataclasses.astuple(prepare()))
        except Exception as exc:  # the same error, whatever it is
            out.append((type(exc), str(exc)))
    return out[0], out[1]


@pytest.mark.parametrize("kwargs", [
    {},
    {"priority": "high"},
    {"data": [1, None, "x"]},
    {"job_id": "evt_1"},
    {"job_id": "evt_1", "track": True},
    {"job_id": "evt_1", "priority": "high", "data": None},
    # refusals, in the general path's order when several apply
    {"name": ""},
    {"name": 7, "data": float("nan")},
    {"data": float("nan")},
    {"data": {"a": [1.0, float("inf")]}},
    {"data": object()},
    {"data": "x" * (2 << 20)},
    {"priority": "nope", "job_id": ""},
    {"priority": 3},
    {"job_id": ""},
    {"job_id": 5},
    {"job_id": "\ud800"},
    {"job_id": "x" * 1025},
])
def test_the_short_path_prepares_what_the_general_path_does(kwargs: dict[str, Any]) -> None:
    fast, general = both(**kwargs)
    assert fast == general


def test_a_delay_reads_the_clock_when_no_time_is_given() -> None:
    enqueuer = Queue("unit", url="redis://127.0.0.1:1/0")._enqueuer
    before = int(time.time() * 1000)
    job = enqueuer.prepare_job("n", {}, None, 60, "evt_1", None, None, None, False, None, None)
    assert before + 60_000 <= job.record[1] <= int(time.time() * 1000) + 60_000
