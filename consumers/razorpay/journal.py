"""The payment journal: an order-dependent ledger of each payment's lifecycle.

The main ledger (`store.Ledger`) is order-tolerant: a status is the maximum of what the events
say, whatever their order. The journal is the opposite, as most business code is: it keeps a
payment's current status and appends one row per transition (``seq`` 1, 2, ...), and refuses a
transition the current status does not allow (`states.PAYMENT_LIFECYCLE`: ``captured`` before
``authorized`` raises `OutOfOrder` and writes nothing). Such a handler is only correct when the
events of one payment are applied one at a time, in the order they were added: an ordered
queue keyed by the payment id (``Queue(..., ordered=("pay_",))``, docs/scaling.md).

Each event is applied once (its id is unique in the journal), in one transaction on the
ledger's database, next to the ledger's own tables (``<prefix>payment_lifecycle``,
``<prefix>payment_journal``).
"""

from __future__ import annotations

import time
from typing import Any

from .database import TRANSIENT_ERRORS, Database, LedgerUnavailable
from .states import PAYMENT_LIFECYCLE, OutOfOrder

__all__ = ["OutOfOrder", "PaymentJournal"]


class PaymentJournal:
    """The lifecycle tables of one ledger database, under the ledger's table prefix."""

    def __init__(self, db: Database, prefix: str = "rzp_") -> None:
        self.db = db
        self.current = f"{prefix}payment_lifecycle"
        self.rows = f"{prefix}payment_journal"

    def schema(self) -> list[str]:
        """The DDL of the journal; every statement is safe to run again."""
        return [
            f"CREATE TABLE IF NOT EXISTS {self.current} (id TEXT PRIMARY KEY, "
            "status TEXT NOT NULL, seq INTEGER NOT NULL, updated_ms BIGINT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.rows} (payment_id TEXT NOT NULL, "
            "seq INTEGER NOT NULL, from_status TEXT NOT NULL, to_status TEXT NOT NULL, "
            "event_id TEXT NOT NULL UNIQUE, applied_ms BIGINT NOT NULL, "
            "PRIMARY KEY (payment_id, seq))",
        ]

    async def create_schema(self) -> None:
        """Create the journal tables that do not exist yet."""
        async with self.db.transaction() as tx:
            if self.db.dialect == "postgresql":
                await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.rows)
            for statement in self.schema():
                await tx.execute(statement)

    async def drop_schema(self) -> None:
        """Drop the journal tables."""
        async with self.db.transaction() as tx:
            for name in (self.rows, self.current):
                await tx.execute(f"DROP TABLE IF EXISTS {name}")

    async def advance(self, event_id: str, payment_id: str, to: str) -> bool:
        """Move ``payment_id`` to ``to`` as event ``event_id`` says, once per event id.

        Returns False (and changes nothing) when the event was already applied. Raises
        `OutOfOrder` (nothing written) when the payment's current status does not allow
        ``to``, ``LedgerUnavailable`` when the write failed for a transient reason.
        """
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        try:
            async with self.db.transaction() as tx:
                if await tx.fetchone(f"SELECT 1 AS x FROM {self.rows} WHERE event_id = $1",
                                     event_id):
                    return False
                row = await tx.fetchone(
                    f"SELECT status, seq FROM {self.current} WHERE id = $1{lock}", payment_id)
                current = row["status"] if row else PAYMENT_LIFECYCLE.initial
                seq = int(row["seq"]) + 1 if row else 1
                PAYMENT_LIFECYCLE.step(current, to)
                now_ms = int(time.time() * 1000)
                await tx.execute(
                    f"INSERT INTO {self.rows} (payment_id, seq, from_status, to_status, "
                    "event_id, applied_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                    payment_id, seq, current, to, event_id, now_ms)
                await tx.execute(
                    f"INSERT INTO {self.current} (id, status, seq, updated_ms) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET "
                    "status = excluded.status, seq = excluded.seq, "
                    "updated_ms = excluded.updated_ms", payment_id, to, seq, now_ms)
            return True
        except TRANSIENT_ERRORS as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def history(self, payment_id: str) -> list[str]:
        """The statuses ``payment_id`` went through, in order (without the initial one)."""
        rows = await self._all(f"SELECT to_status FROM {self.rows} WHERE payment_id = $1 "
                               "ORDER BY seq", payment_id)
        return [row["to_status"] for row in rows]

    async def statuses(self) -> dict[str, str]:
        """Every journaled payment's current status."""
        rows = await self._all(f"SELECT id, status FROM {self.current}")
        return {row["id"]: row["status"] for row in rows}

    async def _all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.db.transaction() as tx:
            return await tx.fetchall(sql, *args)
