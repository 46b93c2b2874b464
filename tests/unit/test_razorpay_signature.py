"""Razorpay webhook signatures: hex HMAC-SHA256 of the raw body, constant-time comparison."""

from __future__ import annotations

import time

import orjson
import pytest
from pydantic import SecretStr

from consumers.razorpay.sample import payment_event, sample_webhooks, sign_event
from consumers.razorpay.signature import sign, verify

SECRET = "whsec_test_123"
BODY = b'{"entity":"event","event":"payment.captured"}'
# computed independently: printf '%s' "$BODY" | openssl dgst -sha256 -hmac whsec_test_123
EXPECTED = "afab959aab684b042f79999eee67e3974f7ed3628acb0aeac7d6fce6210d23fd"


def test_sign_matches_an_independent_hmac() -> None:
    assert sign(BODY, SECRET) == EXPECTED
    assert sign(BODY, SECRET.encode()) == EXPECTED
    assert sign(BODY, SecretStr(SECRET)) == EXPECTED


def test_the_right_signature_verifies() -> None:
    assert verify(BODY, EXPECTED, SECRET)
    assert verify(BODY, EXPECTED.upper(), SECRET)
    assert verify(BODY, f" {EXPECTED}\n", SecretStr(SECRET))


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "0" * 64,
        EXPECTED[:-1],
        EXPECTED + "0",
        EXPECTED[:-1] + ("0" if EXPECTED[-1] != "0" else "1"),
        "é" * 64,
        "sha256=" + EXPECTED,
    ],
    ids=["missing", "empty", "zeros", "short", "long", "one-digit-off", "non-ascii", "prefixed"],
)
def test_a_wrong_or_missing_signature_is_refused(signature: str | None) -> None:
    assert not verify(BODY, signature, SECRET)


def test_the_body_is_signed_byte_for_byte() -> None:
    assert not verify(BODY + b" ", EXPECTED, SECRET)
    assert not verify(BODY.replace(b":", b": "), EXPECTED, SECRET)


def test_another_secret_does_not_verify() -> None:
    assert not verify(BODY, EXPECTED, "whsec_other")


def test_an_empty_secret_verifies_nothing() -> None:
    assert not verify(BODY, sign(BODY, ""), "")


def test_sample_webhooks_carry_a_valid_signature() -> None:
    hook = sign_event(payment_event("payment.captured", "pay_TestPayment0001"), SECRET)
    assert verify(hook.body, hook.headers()["x-razorpay-signature"], SECRET)
    assert hook.headers()["x-razorpay-event-id"] == hook.event_id


def test_many_sample_webhooks_can_all_lie_in_the_past() -> None:
    """The benchmark signs ~150k at once: spaced a second apart from an hour ago, most would be
    created in the future and refused by the ingress (past its 300 s of clock skew)."""
    now = int(time.time())
    hooks = sample_webhooks(20_000, SECRET, 1, start=now - 3000, per_second=10)
    created = [orjson.loads(hook.body)["created_at"] for hook in hooks]
    assert len({hook.event_id for hook in hooks}) == 20_000
    assert min(created) >= now - 3000 and max(created) <= now
    with pytest.raises(ValueError, match="per_second"):
        sample_webhooks(1, SECRET, per_second=0)
