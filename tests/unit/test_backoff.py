"""Backoff: fixed, exponential and full-jitter delays, the cap, and the wire form."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamflow import Backoff

delays = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
attempts = st.integers(min_value=1, max_value=10_000)


def test_fixed_is_the_same_delay_for_every_attempt() -> None:
    backoff = Backoff.fixed(1.5)
    assert [backoff.seconds(n) for n in (1, 2, 3, 10, 1000)] == [1.5] * 5


def test_exponential_doubles_from_the_base_delay() -> None:
    backoff = Backoff.exponential(0.5)
    assert [backoff.seconds(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_default_backoff_is_exponential_from_two_seconds() -> None:
    backoff = Backoff()
    assert (backoff.kind, backoff.seconds(1), backoff.seconds(3)) == ("exponential", 2.0, 8.0)


def test_exponential_is_capped_at_max_delay() -> None:
    backoff = Backoff.exponential(1.0, max_delay=10.0)
    assert [backoff.seconds(n) for n in (1, 4, 5, 6, 500)] == [1.0, 8.0, 10.0, 10.0, 10.0]


def test_fixed_is_capped_at_max_delay_too() -> None:
    assert Backoff("fixed", 50.0, 20.0).seconds(1) == 20.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    backoff = Backoff.exponential(3.0, max_delay=60.0)
    assert backoff.seconds(10**9) == 60.0
    assert Backoff.jitter(3.0, max_delay=60.0).seconds(10**9, random.Random(1)) <= 60.0


def test_attempt_zero_or_negative_counts_as_the_first() -> None:
    backoff = Backoff.exponential(1.0)
    assert backoff.seconds(0) == backoff.seconds(-5) == backoff.seconds(1) == 1.0


def test_jitter_is_reproducible_with_a_seeded_rng_and_actually_varies() -> None:
    backoff = Backoff.jitter(1.0, max_delay=100.0)
    first = [backoff.seconds(6, random.Random(42)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(7)
    draws = {backoff.seconds(6, rng) for _ in range(50)}
    assert len(draws) > 40, "full jitter must spread the retries"
    assert max(draws) - min(draws) > 10.0


@given(delay=delays, max_delay=delays, attempt=attempts, seed=st.integers())
def test_jitter_stays_within_zero_and_the_capped_exponential(
    delay: float, max_delay: float, attempt: int, seed: int
) -> None:
    jittered = Backoff.jitter(delay, max_delay).seconds(attempt, random.Random(seed))
    ceiling = Backoff.exponential(delay, max_delay).seconds(attempt)
    assert 0.0 <= jittered <= ceiling <= max_delay


@given(delay=delays, max_delay=delays, attempt=attempts)
def test_exponential_never_exceeds_the_cap_and_never_decreases(
    delay: float, max_delay: float, attempt: int
) -> None:
    backoff = Backoff.exponential(delay, max_delay)
    now, later = backoff.seconds(attempt), backoff.seconds(attempt + 1)
    assert 0.0 <= now <= later <= max_delay
    assert math.isfinite(later)


@given(kind=st.sampled_from(["fixed", "exponential", "jitter"]), delay=delays, max_delay=delays)
def test_to_list_from_list_round_trip(kind: str, delay: float, max_delay: float) -> None:
    backoff = Backoff(kind, delay, max_delay)  # type: ignore[arg-type]
    wire = backoff.to_list()
    assert wire == [kind, delay, max_delay]
    assert Backoff.from_list(wire) == backoff


def test_from_list_accepts_integers_and_numeric_strings() -> None:
    assert Backoff.from_list(["fixed", 2, "30"]) == Backoff("fixed", 2.0, 30.0)


@pytest.mark.parametrize("kind", ["linear", "", "FIXED", "Exponential", None, 3])
def test_unknown_kinds_are_refused(kind: object) -> None:
    with pytest.raises(ValueError, match="unknown backoff kind"):
        Backoff(kind, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Backoff.from_list([kind, 1.0, 10.0])


@pytest.mark.parametrize("delay, max_delay", [(-1.0, 10.0), (1.0, -0.5)])
def test_negative_delays_are_refused(delay: float, max_delay: float) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Backoff("fixed", delay, max_delay)


@pytest.mark.parametrize(
    "raw", [None, "fixed", ["fixed", 1.0], ["fixed", 1.0, 2.0, 3.0], ("fixed", 1.0, 2.0), {}]
)
def test_from_list_refuses_anything_but_a_three_item_list(raw: object) -> None:
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff.from_list(raw)


@pytest.mark.parametrize(
    "delay, max_delay", [(math.nan, 10.0), (1.0, math.nan), (math.inf, math.inf)]
)
def test_non_finite_delays_are_refused(delay: float, max_delay: float) -> None:
    with pytest.raises(ValueError):
        Backoff("fixed", delay, max_delay)
