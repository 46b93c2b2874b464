"""Structured logs: job context fields, JSON lines, Redis URL passwords redacted everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import TracerProvider

from streamflow.logs import (
    JobContextFilter,
    JsonFormatter,
    RedactingFormatter,
    bind_job,
    configure_logging,
    job_fields,
    job_log_context,
    trace_id_of,
    unbind_job,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class FakeJob:
    id: str = "evt_1"
    name: str = "payment.captured"
    queue: str = "payments"
    attempt: int = 2
    traceparent: str | None = TRACEPARENT


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.streamflow.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_inside_a_job_carry_its_fields(capture: tuple[logging.Logger, io.StringIO,
                                                              logging.Handler]) -> None:
    logger, stream, _ = capture
    logger.info("before")
    with job_log_context(FakeJob()):
        logger.info("charging %s", "pay_1")
        with job_log_context(FakeJob(id="evt_2", attempt=1), trace_id="f" * 32):
            logger.warning("nested")
        logger.info("after nested")
    logger.info("after")
    out = lines(stream)
    assert [o["message"] for o in out] == ["before", "charging pay_1", "nested", "after nested",
                                           "after"]
    assert "job_id" not in out[0] and "job_id" not in out[-1]
    assert {k: out[1][k] for k in ("job_id", "queue", "job_name", "attempt", "trace_id")} == {
        "job_id": "evt_1", "queue": "payments", "job_name": "payment.captured", "attempt": 2,
        "trace_id": "0af7651916cd43dd8448eb211c80319c"}
    assert (out[2]["job_id"], out[2]["attempt"], out[2]["trace_id"]) == ("evt_2", 1, "f" * 32)
    assert out[3]["job_id"] == "evt_1"
    assert out[1]["level"] == "INFO" and out[1]["logger"] == "test.streamflow.logs"


def test_trace_id_comes_from_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("x") as span, job_log_context(FakeJob(traceparent=None)):
        fields = job_fields()
    assert fields is not None
    assert fields["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    with job_log_context(FakeJob(traceparent=None)):
        assert (job_fields() or {})["trace_id"] is None
    assert job_fields() is None


def test_trace_id_of() -> None:
    assert trace_id_of(TRACEPARENT) == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id_of(None) is None
    assert trace_id_of("garbage") is None
    assert trace_id_of("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None


def test_passwords_are_redacted_from_message_args_and_tracebacks(
        capture: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, _ = capture
    url = "redis://default:s3cret@redis.internal:6379/0"
    logger.info("connecting to %s", url)
    logger.info("connecting to redis://:hunter2@cache:6380")
    logger.info("mapping %(url)s", {"url": "rediss://u:pw@h:1"})
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError as exc:
        logger.exception("failed: %s", exc)
    text = stream.getvalue()
    for secret in ("s3cret", "hunter2", ":pw@"):
        assert secret not in text
    out = lines(stream)
    assert out[0]["message"] == "connecting to redis://default:***@redis.internal:6379/0"
    assert out[1]["message"] == "connecting to redis://:***@cache:6380"
    assert out[2]["message"] == "mapping rediss://u:***@h:1"
    assert "ConnectionError" in str(out[3]["exc"])


def test_text_formatter_appends_the_job_and_redacts() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.streamflow.logs.text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with job_log_context(FakeJob()):
            logger.warning("retrying")
        try:
            raise RuntimeError("redis://a:b@c")
        except RuntimeError:
            logger.error("no job here", exc_info=True)
    finally:
        logger.removeHandler(handler)
    first, *rest = stream.getvalue().splitlines()
    assert first == ("WARNING retrying [queue=payments job=evt_1 attempt=2 "
                     "trace=0af7651916cd43dd8448eb211c80319c]")
    assert "a:b@" not in "\n".join(rest) and "redis://a:***@c" in "\n".join(rest)


def test_configure_logging_picks_the_format_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    level = root.level
    monkeypatch.setenv("STREAMFLOW_LOG_FORMAT", "json")
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, stream=stream)
    try:
        assert isinstance(handler.formatter, JsonFormatter)
        again = configure_logging(logging.INFO, fmt="text", stream=stream)
        assert handler not in root.handlers and again in root.handlers
        assert isinstance(again.formatter, RedactingFormatter)
    finally:
        for h in [h for h in root.handlers if getattr(h, "_streamflow", False)]:
            root.removeHandler(h)
        root.setLevel(level)


def test_bind_job_is_the_two_call_form_of_the_context() -> None:
    token = bind_job(FakeJob(id="evt_9"), trace_id="a" * 32)
    try:
        assert (job_fields() or {})["job_id"] == "evt_9"
        assert (job_fields() or {})["trace_id"] == "a" * 32
    finally:
        unbind_job(token)
    assert job_fields() is None
