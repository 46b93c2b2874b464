"""The payment ledger: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) with ``DATABASE_URL``.

Every webhook is applied in one database transaction that first records its event id in
``applied_events``: a second delivery of the same event finds the id and changes nothing.
Entity rows keep their status as the maximum ``(status_tier, status_at, status_rank)`` key of
the events seen so far (see ``states``); the comparison runs inside the upsert, so concurrent
workers cannot move a row backwards. Facts such as amount or currency keep the first value
known. A payment's ``amount_refunded`` is recomputed from its processed refunds, never
incremented, so it cannot double count.

Usage::

    async with open_ledger(settings) as ledger:          # creates the schema
        applied = await ledger.apply(event, [EntityUpdate(PAYMENTS, "pay_1", ...)])
        row = await ledger.get(PAYMENTS, "pay_1")
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from .database import (
    TRANSIENT_ERRORS,
    Database,
    LedgerError,
    LedgerUnavailable,
    PostgresDatabase,
    Row,
    SqliteDatabase,
    Transaction,
    open_database,
)
from .settings import RazorpaySettings
from .states import Versioned
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

__all__ = [
    "DISPUTES",
    "INTEGER_COLUMNS",
    "ORDERS",
    "PAYMENTS",
    "REFUNDS",
    "SETTLEMENTS",
    "SUBSCRIPTIONS",
    "TABLES",
    "TRANSIENT_ERRORS",
    "AppliedEvent",
    "Database",
    "EntityUpdate",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "Table",
    "Transaction",
    "open_database",
    "open_ledger",
]


def _state_columns() -> str:
    return ("status TEXT NOT NULL, status_tier INTEGER NOT NULL, status_at BIGINT NOT NULL, "
            "status_rank INTEGER NOT NULL")


def _upsert_sql(name: str, table: Table) -> str:
    columns = ["id", *table.facts, *table.status_facts, "status", "status_tier", "status_at",
               "status_rank", "updated_ms"]
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    newer = ("(excluded.status_tier, excluded.status_at, excluded.status_rank) > "
             "(cur.status_tier, cur.status_at, cur.status_rank)")
    sets = [f"{c} = COALESCE(cur.{c}, excluded.{c})" for c in table.facts]
    sets += [f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE cur.{c} END"
             for c in (*table.status_facts, "status", "status_tier", "status_at",
                       "status_rank")]
    sets.append("updated_ms = excluded.updated_ms")
    return (f"INSERT INTO {name} AS cur ({', '.join(columns)}) VALUES ({params}) "
            f"ON CONFLICT (id) DO UPDATE SET {', '.join(sets)}")


class Ledger:
    """The payment ledger over one database, under a table-name prefix."""

    def __init__(self, db: Database, prefix: str = "rzp_") -> None:
        self.db = db
        self.prefix = prefix
        self._names = {table.name: f"{prefix}{table.name}" for table in TABLES}
        self._upserts = {table.name: _upsert_sql(self._names[table.name], table)
                         for table in TABLES}
        self._events = f"{prefix}applied_events"

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.db.dialect

    def table_name(self, table: Table) -> str:
        """The name of ``table`` in the database (with the prefix)."""
        return self._names[table.name]

    def schema(self) -> list[str]:
        """The DDL of the ledger; every statement is safe to run again."""
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self._events} (event_id TEXT PRIMARY KEY, "
            "event TEXT NOT NULL, entity_id TEXT, event_at BIGINT NOT NULL, "
            "attempt INTEGER NOT NULL, applied_ms BIGINT NOT NULL)",
        ]
        for table in TABLES:
            columns = [f"{c} {'BIGINT' if c in INTEGER_COLUMNS else 'TEXT'}"
                       for c in (*table.facts, *table.status_facts)]
            if table is PAYMENTS:
                columns += ["amount_refunded BIGINT NOT NULL DEFAULT 0", "refund_status TEXT"]
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self._names[table.name]} (id TEXT PRIMARY KEY, "
                f"{', '.join(columns)}, {_state_columns()}, updated_ms BIGINT NOT NULL)")
        statements.append(f"CREATE INDEX IF NOT EXISTS {self.prefix}refunds_payment "
                          f"ON {self._names['refunds']} (payment_id)")
        return statements

    async def create_schema(self) -> None:
        """Create the tables that do not exist yet (several workers may race: serialized)."""
        async with self.db.transaction() as tx:
            if self.dialect == "postgresql":
                await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._events)
            for statement in self.schema():
                await tx.execute(statement)

    async def drop_schema(self) -> None:
        """Drop every ledger table (tests, teardown of a throwaway prefix)."""
        async with self.db.transaction() as tx:
            for name in (self._events, *self._names.values()):
                await tx.execute(f"DROP TABLE IF EXISTS {name}")

    async def close(self) -> None:
        await self.db.close()

    async def apply(self, event: AppliedEvent, updates: Sequence[EntityUpdate]) -> bool:
        """Apply ``updates`` in one transaction, once per event id.

        Returns False (and changes nothing) when the event was already applied. Raises
        ``LedgerUnavailable`` when the write failed for a transient reason.

        Rows are locked in the order of ``updates``: list parents (order, payment) before
        children (refund, dispute), as the handlers do, so two events never deadlock.
        """
        now_ms = int(time.time() * 1000)
        try:
            async with self.db.transaction() as tx:
                inserted = await tx.execute(
                    f"INSERT INTO {self._events} (event_id, event, entity_id, event_at, "
                    "attempt, applied_ms) VALUES ($1, $2, $3, $4, $5, $6) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    event.id, event.name, event.entity_id, event.at, event.attempt, now_ms)
                if not inserted:
                    return False
                touched: dict[str, None] = {}
                for update in updates:
                    await self._upsert(tx, update, now_ms)
                    if update.table is PAYMENTS:
                        touched[update.id] = None
                    elif update.table is REFUNDS and update.facts.get("payment_id"):
                        touched[str(update.facts["payment_id"])] = None
                for payment_id in touched:
                    await self._recompute_refunds(tx, payment_id)
            return True
        except TRANSIENT_ERRORS as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _upsert(self, tx: Transaction, update: EntityUpdate, now_ms: int) -> None:
        table = update.table
        state = update.state or Versioned(table.machine.initial, 0)
        tier, at, rank = table.machine.key(state)
        unknown = set(update.facts) - set(table.facts) | (
            set(update.status_facts) - set(table.status_facts))
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
        args = [update.id, *(update.facts.get(c) for c in table.facts),
                *(update.status_facts.get(c) for c in table.status_facts),
                state.status, tier, at, rank, now_ms]
        await tx.execute(self._upserts[table.name], *args)

    async def _recompute_refunds(self, tx: Transaction, payment_id: str) -> None:
        # states.refund_status, in SQL: one statement instead of a read and a write
        payments, refunds = self._names["payments"], self._names["refunds"]
        await tx.execute(
            f"UPDATE {payments} SET amount_refunded = r.total, refund_status = CASE "
            f"WHEN r.total <= 0 THEN NULL WHEN {payments}.amount IS NOT NULL AND "
            f"r.total >= {payments}.amount THEN 'full' ELSE 'partial' END "
            f"FROM (SELECT COALESCE(SUM(amount), 0) AS total FROM {refunds} "
            "WHERE payment_id = $1 AND status = 'processed') AS r "
            f"WHERE {payments}.id = $1", payment_id)

    async def get(self, table: Table, entity_id: str) -> Row | None:
        """The row of one entity, or None."""
        async with self.db.transaction() as tx:
            return await tx.fetchone(
                f"SELECT * FROM {self._names[table.name]} WHERE id = $1", entity_id)

    async def applied(self, event_id: str) -> Row | None:
        """The ``applied_events`` row of an event id, or None when it was never applied."""
        async with self.db.transaction() as tx:
            return await tx.fetchone(
                f"SELECT * FROM {self._events} WHERE event_id = $1", event_id)

    async def count_applied(self) -> int:
        """How many distinct events were applied."""
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT COUNT(*) AS n FROM {self._events}")
            return int(row["n"]) if row else 0


@asynccontextmanager
async def open_ledger(settings: RazorpaySettings, *, prefix: str | None = None,
                      create: bool = True) -> AsyncIterator[Ledger]:
    """The ledger ``settings`` point at, its schema created unless ``create`` is False."""
    db = await open_database(settings)
    ledger = Ledger(db, settings.table_prefix if prefix is None else prefix)
    try:
        if create:
            await ledger.create_schema()
        yield ledger
    finally:
        with anyio.CancelScope(shield=True):
            await ledger.close()
