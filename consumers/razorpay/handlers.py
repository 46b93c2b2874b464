"""Webhook handlers: turn a Razorpay event into ledger updates and apply them once.

Each job is one webhook: ``job.id`` is Razorpay's event id, ``job.name`` the event type,
``job.data`` the verified body text exactly as signed, parsed here by the same strict parser as
the ingress's (`parse_event_body`). A body that cannot be understood is dead-lettered
(``Discard``); a ledger that is briefly unavailable makes the job run again later (``Retry``);
any other error is retried with the queue's backoff by the worker.

Usage (one way to wire the ledger: the router opens it with the worker and closes it after
the last ack; pass ``ledger=`` only to share one the caller already holds)::

    await Worker(settings.queue, build_router(settings=settings), settings=sf).run()

or, from the generic worker command (the ledger of the environment, ``DATABASE_URL`` and
``RAZORPAY_*``)::

    streamflow worker payments --app consumers.razorpay.handlers:router
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from streamflow import Discard, Job, Retry, Router

from .database import LedgerUnavailable
from .journal import PaymentJournal
from .settings import RazorpaySettings
from .states import EVENT_STATUS, LIFECYCLE_EVENTS, PAYMENT_STATUS_OF_ENTITY, OutOfOrder, Versioned
from .store import Ledger, open_ledger
from .tables import (
    DISPUTES,
    INTEGER_COLUMNS,
    ORDERS,
    PAYMENTS,
    REFUNDS,
    SETTLEMENTS,
    SUBSCRIPTIONS,
    TABLES,
    AppliedEvent,
    EntityUpdate,
    Table,
)
from .verifier import MalformedBody, parse_event_body

log = logging.getLogger("consumers.razorpay")

_T = TypeVar("_T")

FAMILIES: dict[str, Table] = {
    "payment.dispute.": DISPUTES,
    "subscription.": SUBSCRIPTIONS,
    "settlement.": SETTLEMENTS,
    "refund.": REFUNDS,
    "order.": ORDERS,
}
"""Event families handled beyond ``EVENT_STATUS``: their status comes from the entity."""

HANDLED_EVENTS: tuple[str, ...] = tuple(EVENT_STATUS)


class MalformedEvent(ValueError):
    """Raised when a webhook body lacks what its event type needs."""


def _optional_entity(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    payload = body.get("payload")
    wrapper = payload.get(name) if isinstance(payload, Mapping) else None
    entity = wrapper.get("entity") if isinstance(wrapper, Mapping) else None
    if isinstance(entity, dict) and isinstance(entity.get("id"), str) and entity["id"]:
        return entity
    return None


def _entity(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    entity = _optional_entity(body, name)
    if entity is None:
        raise MalformedEvent(f"payload.{name}.entity with an id is missing")
    return entity


INT64 = range(-(2**63), 2**63)


def _value(column: str, value: Any) -> Any:
    """An entity field as its column holds it: integers or text, anything else dropped.

    An integer the column cannot hold exactly is malformed, never rounded."""
    if value is None:
        return None
    if column in INTEGER_COLUMNS:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        if value not in INT64:
            raise MalformedEvent(f"{column} {value} does not fit a 64-bit integer")
        return value
    return value if isinstance(value, str) else None


def entity_update(table: Table, entity: Mapping[str, Any], at: int,
                  status: str | None) -> EntityUpdate:
    """The ledger update an entity makes at ``at`` (``status`` None: its facts only)."""
    return EntityUpdate(
        table, entity["id"], Versioned(status, at) if status else None,
        facts={c: _value(c, entity.get(c)) for c in table.facts},
        status_facts={c: _value(c, entity.get(c)) for c in table.status_facts},
    )


def _status(table: Table, event: str, entity: Mapping[str, Any]) -> str | None:
    known = EVENT_STATUS.get(event)
    if known is not None and known[0] is table.machine:
        return known[1]
    status = entity.get("status")
    if table is PAYMENTS:
        return PAYMENT_STATUS_OF_ENTITY.get(status) if isinstance(status, str) else None
    return status if isinstance(status, str) and status in table.machine else None


def updates_for(event: str, body: Mapping[str, Any]) -> tuple[str | None, list[EntityUpdate]]:
    """The main entity id and the ledger updates of one event, parents first.

    The event's main entity takes its status from the event type (``EVENT_STATUS``) or, for
    other types of its family, from the entity; an embedded payment is applied as its own
    status says. Types this ledger does not track give no updates (the event is recorded).
    """
    at = body.get("created_at")
    if not isinstance(at, int) or isinstance(at, bool):
        raise MalformedEvent("created_at (unix seconds) is missing")
    table = _main_table(event)
    if table is None:
        return None, []
    main = _entity(body, table.entity)
    update = entity_update(table, main, at, _status(table, event, main))
    if table is PAYMENTS:
        return main["id"], [update]
    updates = [update]
    payment = _optional_entity(body, "payment")
    if payment is not None:
        updates.insert(0 if table is not ORDERS else 1,
                       entity_update(PAYMENTS, payment, at, _status(PAYMENTS, "", payment)))
    elif table is REFUNDS:
        payment_id = main.get("payment_id")
        if not isinstance(payment_id, str) or not payment_id:
            raise MalformedEvent("payload.refund.entity.payment_id is missing")
        updates.insert(0, EntityUpdate(PAYMENTS, payment_id))
    return main["id"], updates


def _main_table(event: str) -> Table | None:
    known = EVENT_STATUS.get(event)
    if known is not None:
        return next(table for table in TABLES if table.machine is known[0])
    for prefix, table in FAMILIES.items():
        if event.startswith(prefix):
            return table
    return None


def build_router(ledger: Ledger | None = None,
                 settings: RazorpaySettings | None = None) -> Router:
    """A router whose handlers apply every event to a ledger; unknown types are recorded.

    With ``ledger``, the handlers use it (its owner opens and closes it). Without, the router's
    lifespan opens the ledger ``settings`` (default: ``RazorpaySettings()`` from the
    environment) points at, creating the schema, before the worker's first job and closes it
    after its last ack: an unreachable database stops the worker at start, loudly, instead of
    failing every job. The one way to wire it, whoever runs the worker.
    """
    opened: list[tuple[Ledger, float]] = []
    if ledger is not None:
        opened.append((ledger, (settings or RazorpaySettings()).db_retry_delay))

    async def ledger_of() -> tuple[Ledger, float]:
        if not opened:
            raise RuntimeError("the ledger opens with the worker (router lifespan)")
        return opened[0]

    async def own(ledger: Ledger, config: RazorpaySettings) -> tuple[Ledger, float]:
        log.info("ledger on %s, tables %s*", ledger.dialect, ledger.prefix)
        return ledger, config.db_retry_delay

    router = _router(ledger_of)
    if ledger is None:
        _open_with_worker(router, settings, opened, own)
    return router


def _open_with_worker(router: Router, settings: RazorpaySettings | None, opened: list[_T],
                      make: Callable[[Ledger, RazorpaySettings], Awaitable[_T]]) -> None:
    """Give ``router`` a lifespan that opens the ledger ``settings`` (default: the
    environment's) point at before the worker's first job, keeps ``make(ledger, settings)``
    in ``opened`` while the worker runs and closes the ledger after its last ack."""

    @router.lifespan
    @asynccontextmanager
    async def open_ledger_with_worker() -> AsyncIterator[None]:
        config = settings or RazorpaySettings()
        async with open_ledger(config) as ledger:
            opened.append(await make(ledger, config))
            try:
                yield
            finally:
                opened.clear()


def _router(ledger_of: Callable[[], Awaitable[tuple[Ledger, float]]]) -> Router:
    """The router; ``ledger_of`` gives the ledger and the retry delay of ledger outages."""

    async def apply_event(job: Job) -> str:
        body = event_body(job)
        try:
            entity_id, updates = updates_for(job.name, body)
        except MalformedEvent as exc:
            raise Discard(f"malformed {job.name}: {exc}") from exc
        event = AppliedEvent(job.id, job.name, int(body["created_at"]), entity_id,
                             job.attempt)
        ledger, retry_delay = await ledger_of()
        try:
            applied = await ledger.apply(event, updates)
        except LedgerUnavailable as exc:
            log.warning("ledger unavailable for event %s (%s), attempt %d: %s", job.id,
                        job.name, job.attempt, exc)
            raise Retry(delay=retry_delay, reason="ledger unavailable") from exc
        if not applied:
            log.info("event %s (%s) was already applied", job.id, job.name)
            return "duplicate"
        return "applied" if updates else "recorded"

    router = Router()
    for name in HANDLED_EVENTS:
        router.add(name, apply_event)
    router.fallback(apply_event)
    return router


def event_body(job: Job) -> Mapping[str, Any]:
    """The webhook body of ``job``; `Discard` when it cannot be understood."""
    body = job.data
    if isinstance(body, str):  # the signed text (jobs enqueued before: parsed already)
        try:
            body = parse_event_body(body)
        except MalformedBody as exc:
            raise Discard(f"malformed: {exc}") from exc
    if not isinstance(body, Mapping):
        raise Discard("malformed: the webhook body is not a JSON object")
    return body


# ------------------------------------------------------- the order-dependent payment journal


def lifecycle_step(event: str, body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(payment id, status) an event moves a payment to on `states.PAYMENT_LIFECYCLE`; None
    for events that do not move it. The payment id is also the event's ordering key."""
    to = LIFECYCLE_EVENTS.get(event)
    if to is None:
        return None
    if event.startswith("refund."):
        payment_id = _entity(body, "refund").get("payment_id")
        if not isinstance(payment_id, str) or not payment_id:
            raise MalformedEvent("payload.refund.entity.payment_id is missing")
        return payment_id, to
    return _entity(body, "payment")["id"], to


def ordering_key(event: str, body: Mapping[str, Any]) -> str | None:
    """The key to add a webhook with on an ordered queue (``add(..., key=...)``): the id of
    the payment it moves, so one payment's events run one at a time, in the order added."""
    try:
        step = lifecycle_step(event, body)
    except MalformedEvent:
        return None
    return step[0] if step else None


def build_lifecycle_router(journal: PaymentJournal | None = None,
                           settings: RazorpaySettings | None = None) -> Router:
    """A router whose handler moves payments along their lifecycle in the journal: an
    order-dependent handler, for an ordered queue keyed by `ordering_key`.

    A transition the payment's status does not allow (``captured`` before ``authorized``) is
    dead-lettered (``Discard``), not retried: on an ordered queue a retry would hold the later
    events of the payment back, and the missing event may never come. Without ``journal`` the
    lifespan opens the ledger database of ``settings`` (as `build_router`).
    """
    opened: list[PaymentJournal] = [journal] if journal is not None else []
    retry_delay = (settings or RazorpaySettings()).db_retry_delay

    async def advance(job: Job) -> str:
        body = event_body(job)
        try:
            step = lifecycle_step(job.name, body)
        except MalformedEvent as exc:
            raise Discard(f"malformed {job.name}: {exc}") from exc
        if step is None:
            return "ignored"
        if not opened:
            raise RuntimeError("the journal opens with the worker (router lifespan)")
        try:
            applied = await opened[0].advance(job.id, *step)
        except OutOfOrder as exc:
            raise Discard(f"out of order: {exc}") from exc
        except LedgerUnavailable as exc:
            raise Retry(delay=retry_delay, reason="ledger unavailable") from exc
        return "applied" if applied else "duplicate"

    router = Router()
    for name in LIFECYCLE_EVENTS:
        router.add(name, advance)
    router.fallback(advance)
    if journal is None:
        _open_with_worker(router, settings, opened, _own_journal)
    return router


async def _own_journal(ledger: Ledger, config: RazorpaySettings) -> PaymentJournal:
    """The payment journal on ``ledger``'s database, its table created."""
    journal = PaymentJournal(ledger.db, ledger.prefix)
    await journal.create_schema()
    return journal


router = build_router()
"""The handlers on the environment's ledger: ``--app consumers.razorpay.handlers:router``."""

lifecycle_router = build_lifecycle_router()
"""The payment journal on the environment's ledger database, for an ordered queue:
``--app consumers.razorpay.handlers:lifecycle_router``."""
