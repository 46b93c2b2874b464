"""Masking of sensitive payload fields in the dashboard, and restoring them after an edit."""

from __future__ import annotations

import pytest

pytest.importorskip("jinja2", reason="the dashboard extra is not installed")

from streamflow.dashboard import DEFAULT_SENSITIVE
from streamflow.dashboard.masking import (
    MASK,
    changes,
    contains_mask,
    is_sensitive,
    mask,
    unmask,
)

SENSITIVE = frozenset(DEFAULT_SENSITIVE)
PAYMENT = {"payment_id": "pay_1", "email": "a@example.com", "amount": 100,
           "customer": {"contact": "+91", "name": "Asha"}, "card": {"last4": "4242"},
           "items": [{"vpa": "a@upi"}], "bank_account_number": "123"}


def test_sensitive_keys_at_any_depth_are_masked() -> None:
    masked = mask(PAYMENT, SENSITIVE)
    assert masked["email"] == MASK and masked["card"] == MASK
    assert masked["customer"] == {"contact": MASK, "name": "Asha"}
    assert masked["items"] == [{"vpa": MASK}]
    assert masked["bank_account_number"] == MASK
    assert masked["payment_id"] == "pay_1" and masked["amount"] == 100
    assert PAYMENT["email"] == "a@example.com"  # the original is untouched


def test_key_matching() -> None:
    assert is_sensitive("customer_email", SENSITIVE)
    assert is_sensitive("Email", SENSITIVE)
    assert not is_sensitive("payment_id", SENSITIVE)
    assert not is_sensitive("emailed", SENSITIVE)


def test_unmask_restores_untouched_masked_values_only() -> None:
    edited = mask(PAYMENT, SENSITIVE)
    edited["amount"] = 200
    edited["customer"]["name"] = "Ravi"
    restored = unmask(edited, PAYMENT, SENSITIVE)
    assert restored == {**PAYMENT, "amount": 200, "customer": {"contact": "+91", "name": "Ravi"}}
    assert not contains_mask(restored)
    changed = mask(PAYMENT, SENSITIVE)
    changed["email"] = "new@example.com"
    assert unmask(changed, PAYMENT, SENSITIVE)["email"] == "new@example.com"


def test_nothing_is_masked_without_a_list() -> None:
    assert mask(PAYMENT, frozenset()) is PAYMENT


def test_changes_of_an_edit_name_each_leaf_and_hide_sensitive_values() -> None:
    edited = {**PAYMENT, "amount": 250, "email": "b@example.com", "note": "fixed"}
    edited["customer"] = {"contact": "+91", "name": "Ravi"}
    assert changes(PAYMENT, edited, SENSITIVE) == [
        ("amount", "100", "250"), ("customer.name", '"Asha"', '"Ravi"'),
        ("email", MASK, MASK), ("note", "-", '"fixed"')]
    assert changes(PAYMENT, PAYMENT, SENSITIVE) == []
