"""The ledger's state machines: any ordering or repetition of events ends in one state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.razorpay.handlers import MalformedEvent, updates_for
from consumers.razorpay.sample import (
    dispute_event,
    order_paid_event,
    payment_event,
    refund_event,
    sample_event,
    settlement_event,
    subscription_event,
)
from consumers.razorpay.states import (
    DISPUTE,
    EVENT_STATUS,
    ORDER,
    PAYMENT,
    REFUND,
    SETTLEMENT,
    SUBSCRIPTION,
    StateMachine,
    Versioned,
    refund_status,
)
from consumers.razorpay.store import DISPUTES, ORDERS, PAYMENTS, REFUNDS, SUBSCRIPTIONS

MACHINES = [PAYMENT, REFUND, ORDER, SETTLEMENT, SUBSCRIPTION, DISPUTE]


def states_of(machine: StateMachine, max_size: int = 12) -> st.SearchStrategy[list[Versioned]]:
    return st.lists(
        st.builds(Versioned, st.sampled_from(sorted(machine.order)), st.integers(0, 50)),
        min_size=1, max_size=max_size)


@given(events=states_of(PAYMENT), data=st.data())
def test_any_ordering_of_a_payments_events_ends_in_the_same_state(
        events: list[Versioned], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(events))
    repeated = data.draw(st.lists(st.sampled_from(events), max_size=6))
    assert PAYMENT.fold(shuffled) == PAYMENT.fold(events)
    assert PAYMENT.fold([*shuffled, *repeated]) == PAYMENT.fold(events)


@given(events=states_of(PAYMENT))
def test_a_payment_ends_captured_else_failed_else_authorized(events: list[Versioned]) -> None:
    seen = {event.status for event in events}
    final = PAYMENT.fold(events)
    assert final is not None
    expected = next(s for s in ("captured", "failed", "authorized", "created") if s in seen)
    assert final.status == expected


@given(machine=st.sampled_from(MACHINES), data=st.data())
def test_every_machine_is_order_tolerant(machine: StateMachine, data: st.DataObject) -> None:
    events = data.draw(states_of(machine))
    assert machine.fold(data.draw(st.permutations(events))) == machine.fold(events)


@given(machine=st.sampled_from(MACHINES), data=st.data())
def test_merge_is_a_join(machine: StateMachine, data: st.DataObject) -> None:
    a, b, c = data.draw(states_of(machine, 3).filter(lambda s: len(s) == 3))
    assert machine.merge(a, b) == machine.merge(b, a)
    assert machine.merge(a, a) == a
    assert machine.merge(machine.merge(a, b), c) == machine.merge(a, machine.merge(b, c))


def test_a_captured_payment_never_moves_back() -> None:
    captured = Versioned("captured", 10)
    for late in ("created", "authorized", "failed"):
        assert PAYMENT.merge(captured, Versioned(late, 99)) == captured


def test_failed_is_terminal_unless_captured() -> None:
    failed = Versioned("failed", 10)
    assert PAYMENT.merge(failed, Versioned("authorized", 20)) == failed
    assert PAYMENT.merge(failed, Versioned("captured", 5)).status == "captured"


def final(machine: StateMachine, *events: Versioned) -> str:
    state = machine.fold(events)
    assert state is not None
    return state.status


def test_refunds_end_processed_over_failed_and_pending() -> None:
    assert final(REFUND, Versioned("processed", 5), Versioned("pending", 9)) == "processed"
    assert final(REFUND, Versioned("failed", 5), Versioned("pending", 1)) == "failed"


def test_subscriptions_follow_the_latest_event_until_they_end() -> None:
    halted, active = Versioned("halted", 5), Versioned("active", 10)
    assert SUBSCRIPTION.fold([active, halted]) == active
    assert SUBSCRIPTION.fold([halted, active]) == active
    cancelled = Versioned("cancelled", 1)
    assert SUBSCRIPTION.fold([cancelled, active]) == cancelled


def test_disputes_end_in_their_outcome() -> None:
    won = Versioned("won", 5)
    assert DISPUTE.fold([won, Versioned("under_review", 50)]) == won
    assert final(DISPUTE, Versioned("open", 1), Versioned("action_required", 2)) == (
        "action_required")


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="not a payment status"):
        PAYMENT.key(Versioned("refunded", 1))


def test_refund_status_of_a_payment() -> None:
    assert refund_status(50_000, 0) is None
    assert refund_status(50_000, 10_000) == "partial"
    assert refund_status(50_000, 50_000) == "full"
    assert refund_status(None, 1) == "partial"


# ------------------------------------------------------------- what each event says


def test_payment_events_set_the_payment_status() -> None:
    for event in ("payment.authorized", "payment.captured", "payment.failed"):
        entity_id, updates = updates_for(event, payment_event(event, "pay_A", created_at=7))
        assert entity_id == "pay_A"
        [update] = updates
        assert update.table is PAYMENTS
        assert update.state == Versioned(EVENT_STATUS[event][1], 7)
        assert update.facts["amount"] == 50_000


def test_order_paid_updates_the_order_then_its_payment() -> None:
    entity_id, updates = updates_for("order.paid", order_paid_event("order_A", "pay_A"))
    assert entity_id == "order_A"
    assert [(u.table, u.id) for u in updates] == [(ORDERS, "order_A"), (PAYMENTS, "pay_A")]
    assert updates[0].state is not None and updates[0].state.status == "paid"
    assert updates[1].state is not None and updates[1].state.status == "captured"


def test_refund_events_lock_the_payment_first() -> None:
    body = refund_event("refund.processed", "rfnd_A", "pay_A", amount=100)
    entity_id, updates = updates_for("refund.processed", body)
    assert entity_id == "rfnd_A"
    assert [(u.table, u.id) for u in updates] == [(PAYMENTS, "pay_A"), (REFUNDS, "rfnd_A")]
    assert updates[1].state is not None and updates[1].state.status == "processed"
    assert updates[1].facts["amount"] == 100
    del body["payload"]["payment"]
    _, updates = updates_for("refund.processed", body)
    assert updates[0].table is PAYMENTS and updates[0].state is None


def test_family_events_take_their_status_from_the_event_or_the_entity() -> None:
    _, updates = updates_for("subscription.updated",
                             subscription_event("subscription.updated", "sub_A", status="paused"))
    assert updates[-1].table is SUBSCRIPTIONS and updates[-1].state is not None
    assert updates[-1].state.status == "paused"
    _, updates = updates_for("payment.dispute.lost", dispute_event("payment.dispute.lost",
                                                                   "disp_A", "pay_A"))
    assert [u.table for u in updates] == [PAYMENTS, DISPUTES]
    assert updates[1].state is not None and updates[1].state.status == "lost"
    entity_id, updates = updates_for("settlement.processed", settlement_event("setl_A"))
    assert entity_id == "setl_A" and updates[0].facts["utr"] == "SBIN0000000012345"


def test_untracked_events_change_nothing() -> None:
    assert updates_for("invoice.paid", sample_event("invoice.paid")) == (None, [])


@pytest.mark.parametrize("mangle", ["no-created-at", "no-entity", "entity-without-id"])
def test_a_malformed_body_is_refused(mangle: str) -> None:
    body = payment_event("payment.captured", "pay_A")
    if mangle == "no-created-at":
        del body["created_at"]
    elif mangle == "no-entity":
        body["payload"] = {}
    else:
        del body["payload"]["payment"]["entity"]["id"]
    with pytest.raises(MalformedEvent):
        updates_for("payment.captured", body)
