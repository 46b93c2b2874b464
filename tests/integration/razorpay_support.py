"""Helpers of the Razorpay tests: a real uvicorn server in a thread, a ledger per backend."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import asyncpg  # type: ignore[import-untyped]
import uvicorn

from consumers.razorpay.server import server_options
from consumers.razorpay.settings import RazorpaySettings
from consumers.razorpay.store import Ledger, open_ledger
from tests.servers import HOST, free_port

POSTGRES_DSNS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
SECRET = "whsec_test_3f9a1c"
_postgres: list[str | None] = []


class ServerThread:
    """An ASGI app served by a real uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any, settings: RazorpaySettings | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        options = server_options(settings or RazorpaySettings(webhook_secret=SECRET))
        config = uvicorn.Config(app, host=HOST, port=self.port, log_level="warning",
                                lifespan="on", loop="asyncio", **options)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self._thread.join(10)


async def postgres_dsn() -> str | None:
    """The DSN of the local PostgreSQL (``postgres`` or ``root`` user), None when none answers."""
    if not _postgres:
        found = None
        for dsn in POSTGRES_DSNS:
            try:
                conn = await asyncpg.connect(dsn, timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                continue
            await conn.close()
            found = dsn
            break
        _postgres.append(found)
    return _postgres[0]


def ledger_settings(backend: str, tmp_path: Path, dsn: str | None,
                    **overrides: Any) -> RazorpaySettings:
    """Settings of a throwaway ledger: its own file (SQLite) or table prefix (PostgreSQL)."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    return RazorpaySettings(
        webhook_secret=SECRET, table_prefix=prefix,
        database_url=dsn if backend == "postgres" else None,
        sqlite_path=tmp_path / f"{prefix}ledger.sqlite3", **overrides)


@asynccontextmanager
async def throwaway_ledger(settings: RazorpaySettings) -> AsyncIterator[Ledger]:
    """A ledger whose tables are dropped on exit."""
    async with open_ledger(settings) as ledger:
        try:
            yield ledger
        finally:
            await ledger.drop_schema()


async def wait_for(probe: Callable[[], Awaitable[Any]], timeout: float = 10.0,
                   what: str = "condition") -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while True:
            result = await probe()
            if result:
                return result
            await anyio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
