"""The identity guards' shared state in SQL: seen DPoP proofs and failed client logins.

Every replica on one database sees the same rows, so a DPoP proof is accepted once
across all of them (RFC 9449 §11.1) and failed secrets are counted once per client id.
Each operation is one statement whose atomicity the database provides:

- a proof's first use is an INSERT the primary key decides (`ON CONFLICT ... DO UPDATE
  ... WHERE` the stored row has expired, `RETURNING` the key: a row back means first
  use, none means replay);
- a failure is an upsert that adds one to the client's counter, or starts it at 1 when
  its window has lapsed.

PostgreSQL gets a small engine of its own: autocommit (no BEGIN/COMMIT round trips),
no pre-ping (one statement is one round trip; a connection found dead is replaced
and the statement retried once) and `synchronous_commit=off`, since losing the last
few hundred milliseconds of these rows in a database crash is harmless next to a WAL
flush on every request. SQLite (one process) uses the `Database`'s own engine and
the same statements. Expired rows are purged at most once per `PURGE_INTERVAL_S`
per process, by a DELETE on the `expires_at_ms` index, off the request path.
Times are epoch milliseconds of the caller's wall clock, the unit Redis uses too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.storage.db import Database
from server.storage.tables import AuthFailureRow, DpopProofRow, table_of

log = logging.getLogger("orchestrator.storage")

PURGE_INTERVAL_S = 60.0
_proofs = table_of(DpopProofRow)
_failures = table_of(AuthFailureRow)
_T = TypeVar("_T")


class SqlGuards:
    """Statements over `dpop_proofs` and `auth_failures`; `close()` releases its engine."""

    def __init__(self, db: Database) -> None:
        if db.is_sqlite:
            self._engine = db.engine
            self._owned: AsyncEngine | None = None
            self._insert: Callable[[sa.Table], Any] = sqlite.insert
        else:
            self._owned = self._engine = create_async_engine(
                db.url,
                pool_size=5,
                max_overflow=10,
                pool_pre_ping=False,
                isolation_level="AUTOCOMMIT",
                connect_args={"server_settings": {"synchronous_commit": "off"}},
            )
            self._insert = postgresql.insert
        self._next_purge_ms = 0
        self._purging: asyncio.Task[None] | None = None
        # Built once: constructing and cache-keying a statement costs more than running it.
        self._first_use = _first_use_statement(self._insert)
        self._add_failure = _add_failure_statement(self._insert)

    async def first_use(self, proof_key: str, *, expires_at_ms: int, now_ms: int) -> bool:
        """Record `proof_key` until `expires_at_ms`; False when it is recorded and unexpired."""
        values = {"proof_key": proof_key, "expires_at_ms": expires_at_ms, "now_ms": now_ms}
        stored = await self._execute(lambda conn: _first(conn, self._first_use, values))
        self._purge_soon(now_ms)
        return stored is not None

    async def add_failure(self, client_id: str, *, now_ms: int, window_ms: int) -> int:
        """One more failure of `client_id` (1 when its window lapsed); the new count."""
        values = {"client_id": client_id, "now_ms": now_ms, "expires_at_ms": now_ms + window_ms}
        count = await self._execute(lambda conn: _first(conn, self._add_failure, values))
        self._purge_soon(now_ms)
        return int(count or 0)

    async def failures(self, client_id: str, *, now_ms: int) -> tuple[int, int] | None:
        """(failures, last failure in epoch ms) within the window, or None."""
        query = sa.select(_failures.c.failures, _failures.c.last_failure_ms).where(
            _failures.c.client_id == client_id, _failures.c.expires_at_ms > now_ms
        )

        async def read(conn: AsyncConnection) -> tuple[int, int] | None:
            row = (await conn.execute(query)).first()
            return None if row is None else (int(row[0]), int(row[1]))

        return await self._execute(read)

    async def clear_failures(self, client_id: str) -> None:
        statement = sa.delete(_failures).where(_failures.c.client_id == client_id)

        async def delete(conn: AsyncConnection) -> None:
            await conn.execute(statement)

        await self._execute(delete)

    async def purge(self, *, now_ms: int) -> None:
        """Delete the rows of both tables whose time is up (index range scans)."""

        async def delete(conn: AsyncConnection) -> None:
            await conn.execute(sa.delete(_proofs).where(_proofs.c.expires_at_ms <= now_ms))
            await conn.execute(sa.delete(_failures).where(_failures.c.expires_at_ms <= now_ms))

        await self._execute(delete)

    async def close(self) -> None:
        """Wait for a running purge (one DELETE per table), then release the engine."""
        if self._purging is not None:
            await self._purging
        if self._owned is not None:
            await self._owned.dispose()

    def _purge_soon(self, now_ms: int) -> None:
        if now_ms < self._next_purge_ms or (self._purging and not self._purging.done()):
            return
        self._next_purge_ms = now_ms + int(PURGE_INTERVAL_S * 1000)
        self._purging = asyncio.get_running_loop().create_task(self._purge_logged(now_ms))

    async def _purge_logged(self, now_ms: int) -> None:
        try:
            await self.purge(now_ms=now_ms)
        except sa.exc.SQLAlchemyError:
            log.warning("purging expired DPoP proofs and login failures failed", exc_info=True)

    async def _execute(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        for attempt in (1, 2):
            try:
                async with self._engine.begin() as conn:
                    return await work(conn)
            except sa.exc.DBAPIError as exc:
                # Without pre-ping a pooled connection may have died (database restart);
                # SQLAlchemy invalidates it, and the statement runs once more on a new one.
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")


def _first_use_statement(insert: Callable[[sa.Table], Any]) -> sa.Executable:
    """INSERT the proof, or take over an expired row with its key; RETURNING the key
    only when the row is ours (a live conflicting row returns nothing)."""
    statement = insert(_proofs).values(
        proof_key=sa.bindparam("proof_key"), expires_at_ms=sa.bindparam("expires_at_ms")
    )
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[_proofs.c.proof_key],
        set_={"expires_at_ms": statement.excluded.expires_at_ms},
        where=_proofs.c.expires_at_ms <= sa.bindparam("now_ms", type_=sa.BigInteger),
    ).returning(_proofs.c.proof_key)


def _add_failure_statement(insert: Callable[[sa.Table], Any]) -> sa.Executable:
    """Start the client's count at 1, or add 1 to it (1 again when its window lapsed)."""
    now_ms = sa.bindparam("now_ms", type_=sa.BigInteger)
    statement = insert(_failures).values(
        client_id=sa.bindparam("client_id"),
        failures=1,
        last_failure_ms=now_ms,
        expires_at_ms=sa.bindparam("expires_at_ms"),
    )
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[_failures.c.client_id],
        set_={
            "failures": sa.case(
                (_failures.c.expires_at_ms <= now_ms, 1), else_=_failures.c.failures + 1
            ),
            "last_failure_ms": statement.excluded.last_failure_ms,
            "expires_at_ms": statement.excluded.expires_at_ms,
        },
    ).returning(_failures.c.failures)


async def _first(conn: AsyncConnection, statement: sa.Executable, values: dict[str, Any]) -> Any:
    return (await conn.execute(statement, values)).scalar()
