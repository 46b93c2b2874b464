"""What ``Queue.add`` checks of a job before anything is written: names, ids, payloads,
options, delays and business keys; each refusal an ``InvalidJob`` (or payload error) that names
the value."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .backoff import Backoff
from .codec import encode_data
from .errors import InvalidJob, PayloadNotSerializable
from .job import JobOptions
from .settings import to_seconds

MAX_ID_LENGTH = 1024


_NAMES: set[str] = set()
"""Job names already checked (most queues use a handful)."""


def check_name(value: object) -> str:
    """``check_text`` of a job name, remembered once it passed."""
    if type(value) is str and value in _NAMES:
        return value
    name = check_text(value, "a job name")
    if len(_NAMES) < 1024:
        _NAMES.add(name)
    return name


def check_id(value: object) -> str:
    """``check_text`` of a caller-given job id, at most ``MAX_ID_LENGTH`` characters."""
    text = check_text(value, "job_id")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidJob(f"job_id is {len(text)} characters, over {MAX_ID_LENGTH}")
    return text


def check_text(value: object, what: str) -> str:
    """``value`` if it is a non-empty string Redis can store as UTF-8, else ``InvalidJob``."""
    if not isinstance(value, str) or not value:
        raise InvalidJob(f"{what} must be a non-empty string, not {shown(value)}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidJob(f"{what} is not valid UTF-8 (a lone surrogate?): {value!r}") from None
    return value


def shown(value: object) -> str:
    """``value`` as an error message shows it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def non_finite(value: Any) -> bool:
    """Whether ``value`` holds NaN or an infinity (which orjson writes as null)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(non_finite(v) for v in value)
    return False


def encode_payload(data: Any, max_bytes: int) -> bytes:
    """``data`` as JSON; refused when it holds NaN or an infinity (JSON has neither: orjson
    would store null), is not serializable or is over ``max_bytes``."""
    try:
        raw = orjson.dumps(data)  # encode_data's work, inlined: this runs for every add
    except TypeError:
        raw = encode_data(data, max_bytes)  # raises, naming the cause
    if len(raw) > max_bytes:
        raw = encode_data(data, max_bytes)  # raises PayloadTooLarge
    # orjson writes NaN/inf as null: look only then (find: `in` takes a slower path on bytes)
    if raw.find(b"null") != -1 and non_finite(data):
        raise PayloadNotSerializable("job data holds NaN or an infinity, which JSON cannot carry")
    return raw


_WIRE: dict[tuple[Any, ...], bytes | None] = {}


def options_wire(attempts: Any, backoff: Any, timeout: Any, track: Any,
                 keep_result: Any) -> bytes | None:
    """The envelope's options field of a job (None when all are the queue's defaults);
    ``InvalidJob`` for values a worker could not honour. Checked combinations are cached."""
    key: tuple[Any, ...] = (attempts, type(attempts), backoff, timeout, type(timeout), track,
                            type(track), keep_result, type(keep_result))  # True == 1: types too
    try:
        return _WIRE[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: surely a bad one, checked below
        key = ()
    if attempts is not None and (type(attempts) is not int or attempts < 1):
        raise InvalidJob(f"attempts must be an integer >= 1, not {shown(attempts)}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, int | float) or not math.isfinite(timeout) or timeout <= 0):
        raise InvalidJob(f"timeout must be a finite number of seconds > 0, not "
                         f"{shown(timeout)}")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidJob(f"backoff must be a Backoff, not {shown(backoff)}")
    if not isinstance(track, bool) or not isinstance(keep_result, bool | None):
        raise InvalidJob("track and keep_result must be booleans")
    options = JobOptions(attempts, backoff, float(timeout) if timeout is not None else None,
                         track, keep_result)
    wire = options.to_wire()
    encoded = orjson.dumps(wire) if wire is not None else None
    if key and len(_WIRE) < 1024:
        _WIRE[key] = encoded
    return encoded


def delay_ms(delay: Any) -> int:
    """Whole ms of a delay (``timedelta`` or seconds); 0 or less means now."""
    try:
        seconds = to_seconds(delay)
    except (TypeError, ValueError, OverflowError):
        raise InvalidJob(f"delay must be seconds or a timedelta, not {shown(delay)}") from None
    if not math.isfinite(seconds) or seconds > 10 * 365 * 86400:
        raise InvalidJob(f"delay must be finite and at most 10 years, not {shown(delay)}")
    return round(seconds * 1000) if seconds > 0 else 0


def business_keys(index: Mapping[str, str | int] | None, data: Any,
                  fields: Sequence[str]) -> dict[str, str]:
    """The business keys a job is indexed under: ``index`` plus the queue's ``index_fields``
    found at the top level of ``data``; ``InvalidJob`` for an empty or oversized one."""
    found: dict[str, str] = {}
    if fields and isinstance(data, dict):
        for name in fields:
            value = data.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                found[name] = str(value)
    for name, value in (index or {}).items():
        found[str(name)] = str(value)
    for name, value in found.items():
        if not name or not value or len(name) > 100 or len(value) > 200:
            raise InvalidJob(f"index {name!r}={value!r}: field and value must be non-empty, "
                             "at most 100 and 200 characters")
    return found
