"""Structured logs: job context on every record, JSON lines, secrets redacted.

The worker enters ``job_log_context(job, trace_id)`` around a handler; every record logged in
that task (by streamflow or by the handler, any logger) then carries ``job_id``, ``queue``,
``job_name``, ``attempt`` and ``trace_id``. ``JobContextFilter`` adds them and redacts
passwords of Redis URLs (``redis://user:***@host``) from the message and its arguments;
``JsonFormatter`` writes one JSON object a line. ``configure_logging`` wires both, the format
chosen by ``STREAMFLOW_LOG_FORMAT`` (``text``, the default, or ``json``).
"""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from .connection import redact

FIELDS = ("job_id", "queue", "job_name", "attempt", "trace_id")


class _JobLike(Protocol):
    id: str
    name: str
    queue: str
    attempt: int


_job_context: ContextVar[tuple[_JobLike, str | None] | None] = ContextVar(
    "streamflow_job_log", default=None)


class job_log_context:  # a lower-case name: used as ``with job_log_context(job):``
    """Records logged inside the block carry the job's id, queue, name, attempt and trace id.

    ``trace_id`` (32 hex digits) defaults to the current span's at logging time, else the
    job's ``traceparent``. Entering costs one ``ContextVar.set``: the fields are only worked
    out when a record is logged.
    """

    __slots__ = ("_token", "job", "trace_id")

    def __init__(self, job: _JobLike, trace_id: str | None = None) -> None:
        self.job = job
        self.trace_id = trace_id
        self._token: Token[tuple[_JobLike, str | None] | None] | None = None

    def __enter__(self) -> job_log_context:
        self._token = _job_context.set((self.job, self.trace_id))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _job_context.reset(self._token)
            self._token = None


def bind_job(job: _JobLike, trace_id: str | None = None) -> Token[
        tuple[_JobLike, str | None] | None]:
    """``job_log_context`` as two calls for the worker's hot path (about 0.1 µs instead of 0.5):
    ``token = bind_job(job)`` ... ``finally: unbind_job(token)``."""
    return _job_context.set((job, trace_id))


unbind_job = _job_context.reset
"""Undo ``bind_job`` with the token it returned."""


def job_fields() -> dict[str, Any] | None:
    """The job context fields of the current task, or None outside a job."""
    current = _job_context.get()
    if current is None:
        return None
    job, trace_id = current
    if trace_id is None:
        trace_id = current_trace_id() or trace_id_of(getattr(job, "traceparent", None))
    return {"job_id": job.id, "queue": job.queue, "job_name": job.name,
            "attempt": job.attempt, "trace_id": trace_id}


def current_trace_id() -> str | None:
    """The trace id of the current span as 32 hex digits, or None without a valid span."""
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    return f"{span_context.trace_id:032x}" if span_context.is_valid else None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (the job's ``traceparent``), or None."""
    if traceparent:
        parts = traceparent.split("-")
        if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
            return parts[1]
    return None


def _redact_value(value: Any) -> Any:
    if isinstance(value, str) and "://" in value:
        return redact(value)
    if isinstance(value, BaseException):
        text = str(value)
        return redact(text) if "://" in text else value
    return value


class JobContextFilter(logging.Filter):
    """Adds the job context fields (None outside a job) and redacts Redis URL passwords."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = job_fields()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name) if fields else None)
        if isinstance(record.msg, str) and "://" in record.msg:
            record.msg = redact(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: _redact_value(v) for k, v in record.args.items()}
            else:
                record.args = tuple(_redact_value(arg) for arg in record.args)
        return True


class RedactingFormatter(logging.Formatter):
    """A text formatter that also redacts what the message does not hold (tracebacks), and
    appends the job context as ``[job=... attempt=... trace=...]``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            text += (f" [queue={getattr(record, 'queue', None)} job={job_id} "
                     f"attempt={getattr(record, 'attempt', None)}"
                     f" trace={getattr(record, 'trace_id', None)}]")
        return redact(text) if "://" in text else text


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, the job fields, exc (traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        text = orjson.dumps(out, default=str).decode()
        return redact(text) if "://" in text else text


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int | str = logging.INFO, fmt: str | None = None,
                      stream: Any = None) -> logging.Handler:
    """One root handler with the job filter and a text or JSON formatter.

    ``fmt`` defaults to ``STREAMFLOW_LOG_FORMAT`` (``text`` or ``json``). Returns the handler.
    """
    chosen = (fmt or os.environ.get("STREAMFLOW_LOG_FORMAT") or "text").lower()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else RedactingFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_streamflow", False)]:
        root.removeHandler(old)
    handler._streamflow = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
