"""parse_event_body reads orjson's result only when the strict parser would read the same:
every body, generated or hand-made, gets the strict parser's value or its exact refusal."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.razorpay.sample import sample_webhooks
from consumers.razorpay.verifier import (
    MAX_DEPTH,
    MalformedBody,
    _parse_fast,
    _parse_strict,
    _too_deep,
    parse_event_body,
)


def strict(body: bytes | str) -> dict[str, Any] | str:
    """What the strict parser alone answers: the value, or the refusal's message."""
    try:
        value = _parse_strict(body)
    except MalformedBody as exc:
        return f"refused: {exc}"
    if _too_deep(value):
        return f"refused: body nests deeper than {MAX_DEPTH} levels"
    return value


def answer(body: bytes | str) -> dict[str, Any] | str:
    try:
        return parse_event_body(body)
    except MalformedBody as exc:
        return f"refused: {exc}"


def same(left: object, right: object) -> bool:
    """Equal, with the types of numbers too (1 and 1.0 differ for a ledger)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    return type(left) is type(right) and left == right


def test_sample_webhooks_take_the_fast_path_and_read_the_same() -> None:
    for hook in sample_webhooks(300, "whsec", seed=5):
        fast = _parse_fast(hook.body)
        assert fast is not None
        assert same(fast, strict(hook.body))


@pytest.mark.parametrize("body", [
    b'{"a": 1, "a": 2}',
    b'{"a": "x:y", "a": "z"}',  # a colon in a string must not hide the dropped key
    b'{"a": "x", "b": {"c": 1, "c": 1}}',
    b'{"k": "\\u003a", "a": 1, "a": 2}',  # an escaped colon neither
    b'{"amount": 123456789012345678901234567890}',  # stays an exact int
    b'{"amount": -9223372036854775809}',
    b'{"amount": 18446744073709551616}',
    b'{"amount": 9223372036854775807, "n": -9223372036854775808}',
    b'{"a": "\\ud800"}',  # a lone surrogate: accepted by the strict parser
    b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e400}',
    b'{"a": 1.5, "b": -0.0, "c": 1E2, "d": 5e-324, "e": 0.1}',
    b'[1, 2]', b'"x"', b'{"a": 1} x', b'{"a": 1,}', b'\xef\xbb\xbf{"a": 1}', b'',
    b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}', b'{"a": "\x01"}',
    b'{"n": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}",
    b'{"n": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
    b'{"n": ' + b"[" * 300 + b"]" * 300 + b"}",  # past orjson.dumps's depth limit
    b'{"n": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"s": "' + b"{" * 100 + b'"}',  # brackets in a string only
])
def test_hand_made_bodies_get_the_strict_answer(body: bytes) -> None:
    assert same(answer(body), strict(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert same(answer(text), strict(text))  # workers parse the job's text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from(':"\\{}[],ab é\n\x01\u2028'), max_size=6),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet=st.sampled_from(':ab"{'), max_size=3), children,
                      max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=4), json_values, max_size=5), st.booleans(),
       st.integers(min_value=0, max_value=40))
def test_generated_bodies_get_the_strict_answer(value: dict[str, Any], ascii_only: bool,
                                                duplicate_at: int) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert same(answer(body), strict(body))
    # the same body with its first key written twice (a duplicate somewhere)
    if value:
        first = json.dumps(next(iter(value)), ensure_ascii=ascii_only).encode()
        doubled = body.replace(b"{", b"{" + first + b": 0, ", 1)
        assert same(answer(doubled), strict(doubled))
        assert isinstance(answer(doubled), str)
    # and cut anywhere: never accepted by one and refused by the other
    cut = body[:duplicate_at]
    assert same(answer(cut), strict(cut))


def test_orjson_alone_would_have_read_two_of_these_wrongly() -> None:
    """Why the fast path checks: orjson keeps the last duplicate and reads long ints as
    floats (if either changes, this says so)."""
    assert orjson.loads(b'{"a": 1, "a": 2}') == {"a": 2}
    assert isinstance(orjson.loads(b'{"a": 123456789012345678901234567890}')["a"], float)
