"""The records the producer prepares for the add script (no Redis)."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
import pytest

from streamflow import Backoff, JobSpec, Queue
from streamflow.bulk import Run, chunks
from streamflow.codec import delayed_record, envelope_fields
from streamflow.enqueue import Prepared
from streamflow.errors import InvalidJob, PayloadNotSerializable
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


def _enqueuer() -> Any:
    return Queue("unit", url="redis://127.0.0.1:1/0")._enqueuer


def test_plain_pairs_of_a_bulk_add_become_runs_of_one_level_and_name() -> None:
    jobs: list[Any] = [("a", 1), ["a", 2], JobSpec("a", 3), JobSpec("a", 4, priority="high"),
                       ("b", 5), JobSpec("b", 6, job_id="evt_6"), ("b", 7)]
    out = _enqueuer().prepare_all(jobs, NOW)
    assert [(r.level, r.name, r.data) for r in out if isinstance(r, Run)] == [
        (1, "a", [b"1", b"2", b"3"]), (0, "a", [b"4"]), (1, "b", [b"5"]), (1, "b", [b"7"])]
    assert isinstance(out[3], Prepared) and out[3].keyed and len(out) == 5
    assert out[0].args() == ["r", 1, "a", 0, 3, b"1", b"2", b"3"]


def test_a_run_carries_the_trace_context_once() -> None:
    [run] = _enqueuer().prepare_all([("a", 1), ("a", 2)], NOW, TP, "k=v")
    assert isinstance(run, Run)
    assert run.args() == ["r", 1, "a", 4, b"tp", TP, b"ts", "k=v", 2, b"1", b"2"]


def test_a_bulk_job_holding_null_is_kept_and_one_holding_nan_refused() -> None:
    [run] = _enqueuer().prepare_all([("a", None), ("a", {"b": [None]})], NOW)
    assert isinstance(run, Run) and run.data == [b"null", b'{"b":[null]}']
    with pytest.raises(PayloadNotSerializable, match="NaN"):
        _enqueuer().prepare_all([("a", None), ("a", {"b": [float("nan")]})], NOW)


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("bad", [("a", 1, 2), ("a",), {"name": "a"}, "ab", None])
def test_a_bulk_job_is_a_jobspec_or_a_pair(bad: Any, indexed: bool) -> None:
    enqueuer = _enqueuer()
    if indexed:  # business keys in the data: every job takes the full path
        enqueuer.settings.queue.index_fields = ["order"]
    with pytest.raises(InvalidJob, match="JobSpec or a"):
        enqueuer.prepare_all([("a", 1), bad], NOW)


def test_chunks_hold_at_most_a_chunk_of_jobs_in_the_order_given() -> None:
    enqueuer = _enqueuer()
    keyed = [enqueuer.prepare(JobSpec("k", i, job_id=f"evt_{i}"), NOW) for i in range(700)]
    jobs: list[Any] = [*keyed, Run(1, "a", [0], [str(i).encode() for i in range(1500)]),
                       keyed[0], Run(1, "b", [0], [b"x"] * 799)]
    parts = list(chunks(jobs, 1000))
    sizes = [sum(len(job.data) if isinstance(job, Run) else 1 for job in part)
             for part in parts]
    assert sizes == [1000, 1000, 1000]
    flat = [item for part in parts for job in part
            for item in (job.data if isinstance(job, Run) else [job])]
    assert flat == [*keyed, *(str(i).encode() for i in range(1500)), keyed[0], *[b"x"] * 799]
    assert list(chunks([Run(1, "a", [0], [b"x"] * 1000)], 1000)) == [
        [Run(1, "a", [0], [b"x"] * 1000)]]
    assert list(chunks([], 1000)) == []


def test_a_bulk_add_keeps_no_encoder_buffer_per_job() -> None:
    # orjson hands each payload back in a buffer of 4 KiB or more: kept for every job of a
    # large bulk add, they are most of its memory and CPU (see streamflow.bulk)
    enqueuer = _enqueuer()
    jobs = [("a", {"n": i}) for i in range(1000)]
    tracemalloc.start()
    try:
        [run] = enqueuer.prepare_all(jobs, NOW)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert isinstance(run, Run)
    assert held < 1000 * 200  # ~60 bytes a job, not 4 KiB
    assert run.data[7] == orjson.dumps({"n": 7})
