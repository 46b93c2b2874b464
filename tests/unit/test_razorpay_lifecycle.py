"""The strict payment lifecycle and the ordering key of a webhook."""

from __future__ import annotations

import pytest

from consumers.razorpay.handlers import lifecycle_step, ordering_key
from consumers.razorpay.sample import payment_event, refund_event, settlement_event
from consumers.razorpay.states import PAYMENT_LIFECYCLE, Lifecycle, OutOfOrder


def test_the_lifecycle_allows_only_the_next_steps() -> None:
    assert PAYMENT_LIFECYCLE.run(["authorized", "captured", "refunded", "refunded"]) == \
        "refunded"
    assert PAYMENT_LIFECYCLE.run(["authorized", "failed"]) == "failed"
    for wrong in (["captured"], ["authorized", "refunded"], ["authorized", "captured",
                                                             "authorized"], ["failed",
                                                                             "captured"]):
        with pytest.raises(OutOfOrder, match="cannot go from"):
            PAYMENT_LIFECYCLE.run(wrong)


def test_a_lifecycle_must_list_every_status() -> None:
    with pytest.raises(ValueError, match="every status"):
        Lifecycle("x", "a", {"a": frozenset({"b"})})


def test_the_ordering_key_of_a_webhook_is_its_payment() -> None:
    captured = payment_event("payment.captured", "pay_A1")
    refund = refund_event("refund.processed", "rfnd_1", "pay_A1")
    assert ordering_key("payment.captured", captured) == "pay_A1"
    assert ordering_key("refund.processed", refund) == "pay_A1"
    assert lifecycle_step("refund.processed", refund) == ("pay_A1", "refunded")
    assert ordering_key("settlement.processed", settlement_event("setl_1")) is None
    assert ordering_key("payment.captured", {"payload": {}}) is None
