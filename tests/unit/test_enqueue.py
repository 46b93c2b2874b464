"""The records the producer prepares for the add script (no Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow import Backoff, Queue
from streamflow.codec import delayed_record, envelope_fields
from streamflow.enqueue import Prepared
from streamflow.errors import InvalidJob
from streamflow.job import JobOptions

NOW = 1_700_000_000_000
TP = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


def prepare(**kwargs: Any) -> Prepared:
    q = Queue("unit", url="redis://127.0.0.1:1/0")
    call: dict[str, Any] = {"name": "n", "data": {"a": 1}, "priority": None, "delay": None,
                            "job_id": None, "attempts": None, "backoff": None,
                            "timeout": None, "track": False, "keep_result": None, **kwargs}
    return q._enqueuer.prepare_job(*call.values(), now=NOW, traceparent=TP)


@pytest.mark.parametrize("kwargs", [
    {"track": True},
    {"attempts": 5, "timeout": 2.5, "backoff": Backoff.fixed(1)},
    {"keep_result": False, "priority": "high"},
])
def test_general_records_carry_the_envelope_codec_writes(kwargs: dict[str, Any]) -> None:
    job = prepare(**kwargs)
    _, due, dedup, status, job_id, record, name, count, *fields = job.record
    options = JobOptions(kwargs.get("attempts"), kwargs.get("backoff"), kwargs.get("timeout"),
                         kwargs.get("track", False), kwargs.get("keep_result"))
    assert fields == envelope_fields("n", b'{"a":1}', job_id=job_id or None, options=options,
                                     traceparent=TP)
    assert (due, record, name, count) == (0, "", "n", len(fields))
    assert dedup == 0 and status == len(job.keys)


def test_a_job_with_its_own_id_has_a_short_record() -> None:
    job = prepare(job_id="evt_1", attempts=5)
    assert job.record == ["k", 1, "evt_1", "n", b'{"a":1}', b'{"a":5,"tr":1}', 1, 2, b"tp", TP]
    assert job.keys == ("sf:{unit}:status:evt_1",)  # the status record is the dedup mark
    assert job.keyed and job.indexes == (6,)


def test_a_delayed_record_is_the_promoters_format() -> None:
    job = prepare(job_id="evt_2", delay=60)
    level, due, _, _, job_id, record, *_ = job.record
    assert due == NOW + 60_000 and job_id == "evt_2"
    assert record == delayed_record(level, envelope_fields(
        "n", b'{"a":1}', job_id="evt_2", enqueued_ms=NOW,
        options=JobOptions(track=True), traceparent=TP))


def test_options_checked_once_are_not_confused_with_equal_values_of_other_types() -> None:
    assert prepare(attempts=1).record
    with pytest.raises(InvalidJob, match="attempts"):
        prepare(attempts=True)
    assert prepare(timeout=1).record
    with pytest.raises(InvalidJob, match="timeout"):
        prepare(timeout=True)
