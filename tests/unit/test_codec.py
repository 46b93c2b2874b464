"""The envelope: job <-> stream entry fields, refusals before writing, malformed detection."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamflow import Backoff, JobOptions
from streamflow.codec import (
    F_ATTEMPT,
    F_DATA,
    F_ENQUEUED,
    F_NAME,
    MalformedEntry,
    decode_job,
    delayed_record,
    encode_data,
    envelope_fields,
    next_attempt_fields,
    pairs,
)
from streamflow.errors import PayloadError, PayloadNotSerializable, PayloadTooLarge, StreamflowError

MAX = 512 * 1024
ENTRY = b"1700000000123-7"

text = st.text(st.characters(blacklist_categories=("Cs",)))
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(text, children, max_size=5),
    max_leaves=20,
)
finite = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
backoffs = st.builds(
    Backoff, st.sampled_from(["fixed", "exponential", "jitter"]), finite, finite
)
options = st.builds(
    JobOptions,
    attempts=st.none() | st.integers(min_value=1, max_value=10**6),
    backoff=st.none() | backoffs,
    timeout=st.none() | st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    track=st.booleans(),
    keep_result=st.none() | st.booleans(),
)
traceparents = st.none() | st.from_regex(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", fullmatch=True)


def as_entry(fields: list[bytes | str]) -> dict[bytes, bytes]:
    """What a stream read returns for an XADD of ``fields``: a dict of bytes."""
    raw = [f.encode() if isinstance(f, str) else f for f in fields]
    return pairs(raw)


@given(
    name=names,
    data=json_values,
    job_id=st.none() | names,
    attempt=st.integers(min_value=1, max_value=10**6),
    enqueued_ms=st.none() | st.integers(min_value=0, max_value=2**53),
    opts=options,
    traceparent=traceparents,
    tracestate=st.none() | st.from_regex(r"[a-z]{1,8}=[a-z0-9]{1,8}", fullmatch=True),
)
def test_envelope_round_trip(
    name: str, data: Any, job_id: str | None, attempt: int, enqueued_ms: int | None,
    opts: JobOptions, traceparent: str | None, tracestate: str | None,
) -> None:
    fields = envelope_fields(
        name, encode_data(data, MAX), job_id=job_id, attempt=attempt, enqueued_ms=enqueued_ms,
        options=opts, traceparent=traceparent, tracestate=tracestate,
    )
    job = decode_job(ENTRY, as_entry(fields), "payments", "high")
    assert job.name == name
    assert job.data == data
    assert job.id == (job_id if job_id is not None else "high:1700000000123-7")
    assert job.attempt == attempt
    assert job.enqueued_ms == (enqueued_ms if enqueued_ms is not None else 1700000000123)
    assert job.options == opts
    assert job.traceparent == traceparent
    assert job.tracestate == tracestate
    assert (job.queue, job.level, job.entry_id) == ("payments", "high", "1700000000123-7")


def test_a_plain_first_attempt_is_only_name_and_data() -> None:
    fields = envelope_fields("report", b"{}")
    assert fields == [F_NAME, "report", F_DATA, b"{}"]


def test_default_options_are_not_written() -> None:
    fields = envelope_fields("x", b"1", options=JobOptions())
    assert b"o" not in as_entry(fields)


@given(st.dictionaries(st.binary(max_size=8), st.binary(max_size=64), max_size=8))
def test_garbage_fields_raise_only_malformed_entry(fields: dict[bytes, bytes]) -> None:
    with contextlib.suppress(MalformedEntry):
        decode_job(ENTRY, fields, "q", "normal")


@given(
    entry_id=st.binary(max_size=24),
    extra=st.dictionaries(
        st.sampled_from([b"i", b"a", b"t", b"o", b"tp", b"ts"]), st.binary(max_size=40)
    ),
)
def test_garbage_in_known_fields_raises_only_malformed_entry(
    entry_id: bytes, extra: dict[bytes, bytes]
) -> None:
    fields = {F_NAME: b"job", F_DATA: b"{}", **extra}
    with contextlib.suppress(MalformedEntry):
        decode_job(entry_id, fields, "q", "normal")


@given(
    wire=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(
            st.sampled_from(["a", "b", "to", "tr", "x"]), c, max_size=4),
        max_leaves=12,
    )
)
def test_garbage_options_raise_only_malformed_entry(wire: Any) -> None:
    try:
        raw = orjson.dumps(wire)
    except TypeError:
        return
    with contextlib.suppress(MalformedEntry):
        decode_job(ENTRY, {F_NAME: b"job", F_DATA: b"1", b"o": raw}, "q", "normal")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {F_NAME: b"job"},
        {F_DATA: b"{}"},
        {F_NAME: b"", F_DATA: b"{}"},
        {F_NAME: b"job", F_DATA: b"{not json"},
        {F_NAME: b"\xff\xfe", F_DATA: b"{}"},
        {F_NAME: b"job", F_DATA: b"{}", F_ATTEMPT: b"0"},
        {F_NAME: b"job", F_DATA: b"{}", F_ATTEMPT: b"-3"},
        {F_NAME: b"job", F_DATA: b"{}", F_ATTEMPT: b"two"},
        {F_NAME: b"job", F_DATA: b"{}", F_ENQUEUED: b"soon"},
        {F_NAME: b"job", F_DATA: b"{}", b"o": b"[1, 2]"},
        {F_NAME: b"job", F_DATA: b"{}", b"o": b'{"b": ["linear", 1, 2]}'},
        {F_NAME: b"job", F_DATA: b"{}", b"o": b'{"a": 1e400}'},
        {b"payload": b"written by another app"},
    ],
)
def test_malformed_entries_are_detected(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(MalformedEntry):
        decode_job(ENTRY, fields, "q", "normal")


def test_an_entry_id_that_is_not_a_stream_id_is_malformed() -> None:
    with pytest.raises(MalformedEntry):
        decode_job(b"not-an-id", {F_NAME: b"job", F_DATA: b"1"}, "q", "normal")


@pytest.mark.parametrize("backoff", [b'["fixed", "nan", 1]', b'["fixed", "inf", "inf"]'])
def test_non_finite_backoff_in_an_entry_is_malformed(backoff: bytes) -> None:
    fields = {F_NAME: b"job", F_DATA: b"{}", b"o": b'{"b": ' + backoff + b"}"}
    with pytest.raises(MalformedEntry):
        decode_job(ENTRY, fields, "q", "normal")


class NotJson:
    pass


@pytest.mark.parametrize(
    "data", [NotJson(), {1: "int key"}, {"s": {1, 2}}, b"raw bytes", "\ud800", 2**64, float]
)
def test_encode_data_refuses_what_json_cannot_carry(data: Any) -> None:
    with pytest.raises(PayloadNotSerializable, match="not JSON-serializable"):
        encode_data(data, MAX)


def test_encode_data_refuses_payloads_over_the_limit_and_accepts_the_limit() -> None:
    data = "x" * 98  # 100 bytes once quoted
    assert len(encode_data(data, 100)) == 100
    with pytest.raises(PayloadTooLarge, match="101 bytes, over the limit of 100"):
        encode_data(data + "y", 100)


def test_payload_errors_are_streamflow_and_value_errors() -> None:
    for cls in (PayloadTooLarge, PayloadNotSerializable):
        assert issubclass(cls, PayloadError)
        assert issubclass(cls, StreamflowError)
        assert issubclass(cls, ValueError)


def test_encode_data_is_compact_json() -> None:
    assert encode_data({"amount": 500, "currency": "INR"}, MAX) == (
        b'{"amount":500,"currency":"INR"}'
    )


def test_next_attempt_keeps_id_enqueue_time_data_options_and_trace() -> None:
    opts = JobOptions(attempts=5, backoff=Backoff.fixed(3.0), timeout=2.5, track=True)
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    first = decode_job(
        ENTRY,
        as_entry(envelope_fields("charge", b'{"amount":1}', options=opts, traceparent=tp)),
        "q", "low",
    )
    assert (first.id, first.attempt) == ("low:1700000000123-7", 1)

    second = decode_job(b"1700000009999-0", as_entry(next_attempt_fields(first)), "q", "low")
    assert second.id == "low:1700000000123-7"
    assert second.attempt == 2
    assert second.enqueued_ms == 1700000000123
    assert second.data == {"amount": 1}
    assert second.options == opts
    assert second.traceparent == tp
    assert second.entry_id == "1700000009999-0"

    third = decode_job(b"1700000019999-0", as_entry(next_attempt_fields(second)), "q", "low")
    assert (third.id, third.attempt, third.enqueued_ms) == (
        "low:1700000000123-7", 3, 1700000000123)


def test_a_run_refused_for_a_rate_limit_does_not_spend_an_attempt() -> None:
    job = decode_job(ENTRY, as_entry(envelope_fields("call", b"1", attempt=3)), "q", "low")
    again = decode_job(ENTRY, as_entry(next_attempt_fields(job, spend_attempt=False)), "q",
                       "low")
    assert (again.id, again.attempt, again.enqueued_ms) == (job.id, 3, job.enqueued_ms)


def test_delayed_record_is_json_of_strings_after_the_level_index() -> None:
    fields = envelope_fields(
        "remind", encode_data({"to": "ü@example.com"}, MAX), job_id="j1", attempt=2,
        enqueued_ms=42, options=JobOptions(attempts=4), traceparent="tp",
    )
    record = orjson.loads(delayed_record(2, fields))
    assert record[0] == 2
    assert all(isinstance(item, str) for item in record[1:])
    assert len(record) == 1 + len(fields)
    job = decode_job(ENTRY, pairs([s.encode() for s in record[1:]]), "q", "low")
    assert (job.id, job.name, job.data, job.attempt, job.enqueued_ms) == (
        "j1", "remind", {"to": "ü@example.com"}, 2, 42)
    assert job.options == JobOptions(attempts=4)



def test_pairs_refuses_an_odd_reply() -> None:
    assert pairs([b"a", b"1", b"b", b"2"]) == {b"a": b"1", b"b": b"2"}
    with pytest.raises(ValueError):
        pairs([b"a", b"1", b"b"])
