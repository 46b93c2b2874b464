"""The ledger's databases: one SQLite file (aiosqlite, WAL) or a PostgreSQL pool (asyncpg),
behind one small `Database`/`Transaction` protocol whose SQL uses ``$1``-style parameters;
which one `open_database` opens is ``DATABASE_URL``'s choice. The errors of a ledger write,
and which of them pass (`TRANSIENT_ERRORS`), live here too.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import anyio
import asyncpg  # type: ignore[import-untyped]

from .settings import RazorpaySettings

Row = dict[str, Any]


class LedgerError(Exception):
    """Raised when the ledger cannot be opened or used as configured."""


class LedgerUnavailable(LedgerError):
    """Raised when a write failed for a reason that passes (lock, connection, deadlock)."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TransactionRollbackError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.LockNotAvailableError,
    OSError,
    TimeoutError,
)


class Transaction(Protocol):
    """The statements a ledger transaction runs; SQL uses ``$1``-style parameters."""

    async def execute(self, sql: str, *args: Any) -> int: ...

    async def fetchone(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...


class Database(Protocol):
    """A connection (SQLite) or pool (PostgreSQL) that runs transactions."""

    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def close(self) -> None: ...


_PARAM = re.compile(r"\$(\d+)")


@lru_cache(maxsize=256)
def _qmark(sql: str) -> tuple[str, tuple[int, ...]]:
    """``$n`` SQL as ``?`` SQL plus the argument index of each ``?``, for sqlite3."""
    order = tuple(int(match) - 1 for match in _PARAM.findall(sql))
    return _PARAM.sub("?", sql), order


class _SqliteTransaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        # One trip to aiosqlite's thread, not two (execute, then close the cursor): the cursor
        # is used up and dropped there. Transactions are serialized on the connection, so the
        # change count's growth is this statement's row count.
        text, order = _qmark(sql)
        before = self._conn.total_changes
        await self._conn.execute_fetchall(text, [args[i] for i in order])
        return self._conn.total_changes - before

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        # the ledger's queries of one row select it by key: reading them all is one row
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        # One trip, as `execute` (not three: execute, fetch, close); the connection's row
        # factory (sqlite3.Row) brings the column names along
        text, order = _qmark(sql)
        rows = await self._conn.execute_fetchall(text, [args[i] for i in order])
        return [dict(zip(row.keys(), row, strict=True)) for row in rows]


class SqliteDatabase:
    """One SQLite file in WAL mode; transactions are serialized (SQLite has one writer)."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: Path | str, *, lock_timeout: float) -> SqliteDatabase:
        conn = await aiosqlite.connect(str(path), timeout=lock_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        return cls(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(self._conn)
                await self._conn.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.Error, ValueError):
                    await self._conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        await self._conn.close()


class _PostgresTransaction:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._conn.execute(sql, *args)
        tail = status.rpartition(" ")[2]
        return int(tail) if tail.isdigit() else 0

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        record = await self._conn.fetchrow(sql, *args)
        return dict(record) if record is not None else None

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return [dict(record) for record in await self._conn.fetch(sql, *args)]


class PostgresDatabase:
    """An asyncpg pool; each transaction holds one connection (READ COMMITTED)."""

    dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int, lock_timeout: float) -> PostgresDatabase:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size,
            server_settings={"lock_timeout": f"{int(lock_timeout * 1000)}ms",
                             "application_name": "streamflow-razorpay"})
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PostgresTransaction(conn)

    async def close(self) -> None:
        await self._pool.close()


async def open_database(settings: RazorpaySettings) -> Database:
    """SQLite at ``sqlite_path`` (or a ``sqlite:///`` URL), PostgreSQL for ``postgresql://``."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    if url.startswith(("postgres://", "postgresql://")):
        return await PostgresDatabase.open(url, pool_size=settings.db_pool_size,
                                           lock_timeout=settings.db_lock_timeout)
    if url and not url.startswith("sqlite:///"):
        scheme = url.partition(":")[0]
        raise LedgerError(f"DATABASE_URL scheme {scheme!r} is not supported: "
                          "use postgresql:// or sqlite:///")
    path = url.removeprefix("sqlite:///") if url else settings.sqlite_path
    return await SqliteDatabase.open(path, lock_timeout=settings.db_lock_timeout)
