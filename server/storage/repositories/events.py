"""Events in SQL (`server/domain/events.py`): appended in the caller's transaction,
one INSERT statement per batch, read per subject over `ix_events_tenant_subject_id`.

`insert_events` is the one statement every writer uses — repositories that work on
a Core connection (leasing, the reaper) call it directly with their connection; the
domain goes through `SqlEventLog` on its unit of work. No commits here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.events import NewEvent
from server.storage.db import Database
from server.storage.tables import EventRow, table_of

_table = table_of(EventRow)
# Executed with a list of rows: one multi-row statement per 1,000 ("insertmanyvalues")
# from one cached compilation.
_INSERT = sa.insert(_table)
_COLUMNS = ("tenant_id", "type", "subject", "data", "trace_id", "time")
# PostgreSQL: one array per column (`INSERT .. SELECT * FROM unnest(...)`), six bind
# parameters for any number of events: prepared once, parsed in microseconds.
_UNNEST = sa.text(
    f"INSERT INTO events ({', '.join(_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(':' + name for name in _COLUMNS)})"
).bindparams(
    *(sa.bindparam(name, type_=postgresql.ARRAY(_table.c[name].type)) for name in _COLUMNS)
)


def dump_data(data: Mapping[str, Any] | None) -> str:
    """Compact JSON text of an event's data (keys sorted, so equal data is equal text)."""
    return json.dumps(dict(data or {}), sort_keys=True, separators=(",", ":"), default=str)


def event_values(event: NewEvent) -> dict[str, Any]:
    """The column values of one event row (event_id left to the database)."""
    return {
        "tenant_id": event.tenant_id,
        "type": event.type,
        "subject": event.subject,
        "data": dump_data(event.data),
        "trace_id": event.trace_id or None,
        "time": event.time,
    }


async def insert_events(conn: AsyncConnection, events: Sequence[NewEvent]) -> None:
    """Append `events` with one INSERT per 1,000 (a multi-row VALUES), in `conn`'s
    transaction."""
    if not events:
        return
    rows = [event_values(event) for event in events]
    if conn.dialect.name == "postgresql":
        await conn.execute(_UNNEST, {name: [row[name] for row in rows] for name in _COLUMNS})
    else:
        await conn.execute(_INSERT, rows)


def _history(tenant_id: str, subject: str) -> sa.Select[Any]:
    return (
        sa.select(_table)
        .where(_table.c.tenant_id == tenant_id, _table.c.subject == subject)
        .order_by(_table.c.event_id)
    )


async def read_history(
    conn: AsyncConnection, tenant_id: str, subject: str
) -> Sequence[sa.Row[Any]]:
    """`subject`'s events in the tenant, oldest first."""
    rows: Sequence[sa.Row[Any]] = (await conn.execute(_history(tenant_id, subject))).all()
    return rows


class SqlEventLog:
    """`EventLog` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def append(
        self,
        tenant_id: str | None,
        type: str,
        subject: str,
        data: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> None:
        event = NewEvent(
            tenant_id=tenant_id, type=type, subject=subject, data=data or {}, trace_id=trace_id
        )
        await insert_events(await self._session.connection(), [event])

    async def append_many(self, events: Sequence[NewEvent]) -> None:
        await insert_events(await self._session.connection(), events)

    async def history(self, tenant_id: str, subject: str) -> Sequence[sa.Row[Any]]:
        return await read_history(await self._session.connection(), tenant_id, subject)


class SqlEventReads:
    """`EventReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, tenant_id: str, subject: str) -> Sequence[sa.Row[Any]]:
        async with self._db.read() as conn:
            return await read_history(conn, tenant_id, subject)
