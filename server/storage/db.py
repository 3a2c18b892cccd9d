"""Engine, sessions and migrations for the embedded SQLite default and PostgreSQL.

One `Database` per process. Mutations go through `transaction()`, which is one
database transaction: domain code adds the change and its audit entry to the same
session and nothing is committed until both are.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from server.storage.sqlite_driver import OneHopDbapi

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = sa.make_url(url)
        if self.is_sqlite:
            _ensure_sqlite_dir(self.url)
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, **_engine_options(self.url))
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            sa.event.listen(self.engine.sync_engine, "checkin", _returned)
            sa.event.listen(self.engine.sync_engine, "checkout", _ping_if_idle)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit when the block succeeds, roll back when it raises."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for read paths that use SQLAlchemy Core (no ORM identity map)."""
        async with self.engine.connect() as conn:
            yield conn

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        await self.engine.dispose()


# PostgreSQL errors that mean "no server to talk to": class 08 (connection exception)
# and the 57P0x shutdowns (admin, crash, cannot connect now: starting up or stopping).
_GONE = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` (raised from a database call) means the database is unreachable:
    refused or reset connections, a server shutting down or starting up (SQLSTATE
    class 08, 57P01-57P03), or a pooled connection SQLAlchemy invalidated. Such a call
    may succeed when retried once the database is back (the failure invalidates the
    pool; `_ping_if_idle` replaces idle dead connections), so callers answer
    UNAVAILABLE (AIP-194) instead of INTERNAL.
    SQLAlchemy raises a connect failure bare and wraps the others, so the exception's
    causes are searched too."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, _GONE):
            return True
        if isinstance(seen, sa.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(connection: sa.Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _engine_options(url: sa.URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # As many connections as SQLAlchemy's default allows (5 + 10 overflow), all kept:
        # an overflow connection is closed when returned, and on SQLite each is a new
        # thread, file open and pragmas. At 50 calls in flight nearly every other read
        # opened one (928 connects in 2,000 reads of bench/transcoding.py).
        options: dict[str, Any] = {"connect_args": {"timeout": 30}}
        if url.database and url.database != ":memory:":  # memory: one connection (StaticPool)
            options |= {"pool_size": SQLITE_CONNECTIONS, "max_overflow": 0}
        if url.get_driver_name() == "aiosqlite":
            options["module"] = OneHopDbapi()  # one thread hand-off per statement
        return options
    # 20 kept: a busy server's concurrent calls each hold one for a statement or two;
    # the overflow is closed when returned, so it must be the exception, not the norm.
    # Each connection keeps its prepared statements in an LRU of this many (SQLAlchemy's
    # asyncpg default, 100, is fewer than the distinct statements a busy server cycles
    # through, so hot statements were evicted and prepared again: one more round trip,
    # ~3 % of the server's CPU while starting process instances). A URL that sets
    # `?prepared_statement_cache_size=0` (PgBouncer in transaction mode) keeps it.
    options = {"pool_size": 20, "max_overflow": 10}
    if "prepared_statement_cache_size" not in url.query:  # the URL's own setting wins
        options["connect_args"] = {"prepared_statement_cache_size": PREPARED_STATEMENTS}
    return options


PREPARED_STATEMENTS = 1000
SQLITE_CONNECTIONS = 15


# PostgreSQL pool connections idle at least this long (seconds) are pinged before use
# and replaced when the ping fails (a restarted server). SQLAlchemy's `pool_pre_ping`
# pings on every checkout, which on asyncpg is three round trips (BEGIN, ping,
# ROLLBACK) before each request's own statement: about a tenth of the server's CPU
# per worker call. A connection that dies while in steady use fails its statement
# instead; SQLAlchemy then invalidates the whole pool (a disconnect error), and the
# call answers UNAVAILABLE (`connection_lost`), which clients retry.
PING_IDLE_S = 1.0


def _returned(_dbapi_connection: Any, record: Any) -> None:
    record.info["returned_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    returned_at = record.info.get("returned_at")
    if returned_at is None or time.monotonic() - returned_at < PING_IDLE_S:
        return  # just connected, or in steady use
    try:
        dbapi_connection.ping()
    except Exception as exc:  # the pool retries the checkout with a new connection
        raise sa.exc.DisconnectionError(f"idle connection failed its ping: {exc}") from exc


def _ensure_sqlite_dir(url: sa.URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while a writer commits; NORMAL sync is durable in WAL
    # mode except for the last transactions on power loss, the usual trade-off.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
