"""Events in SQL (`server/domain/events.py`): appended in the caller's transaction,
one INSERT statement per batch, read per subject over `ix_events_tenant_subject_id`.

`insert_events` is the one statement every writer uses — repositories that work on
a Core connection (leasing, the reaper) call it directly with their connection; the
domain goes through `SqlEventLog` on its unit of work. No commits here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.event_feed import EventQuery
from server.domain.events import NewEvent
from server.storage.db import Database
from server.storage.tables import EventCursorRow, EventRow, table_of
from server.storage.unnest import UnnestInsert

_table = table_of(EventRow)
# Executed with a list of rows: one multi-row statement per 1,000 ("insertmanyvalues")
# from one cached compilation.
_INSERT = sa.insert(_table)
IDS_PER_READ = 5000  # event ids per `with_ids` statement
_COLUMNS = ("tenant_id", "type", "subject", "data", "trace_id", "time")
EVENT_COLUMNS = _COLUMNS  # what a new event sets (event_id is the database's)
# PostgreSQL: `INSERT .. SELECT .. FROM unnest(...)` (storage/unnest.py): an array for
# each column whose values differ in the batch (the subjects, mostly), a scalar for the
# rest; a fixed number of bind parameters for any number of events.
_UNNEST = UnnestInsert(_table, _COLUMNS, row_column="subject")


def dump_data(data: Mapping[str, Any] | None) -> str:
    """Compact JSON text of an event's data (keys sorted, so equal data is equal text).
    Data of a few strings and integers (`{"to": "queued"}`, a batch's every event) is
    dumped once per distinct value, through a bounded cache."""
    if not data:
        return "{}"
    if len(data) <= _REMEMBERED_KEYS and all(
        type(value) is str or type(value) is int or value is None for value in data.values()
    ):  # `type(..) is`: True == 1 and 1.0 == 1 would share a cached text
        return _dump_items(tuple(sorted(data.items())))
    return json.dumps(dict(data), sort_keys=True, separators=(",", ":"), default=str)


_REMEMBERED_KEYS = 4


@functools.lru_cache(maxsize=1024)
def _dump_items(items: tuple[tuple[str, str | int | None], ...]) -> str:
    return json.dumps(dict(items), separators=(",", ":"))


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
        statement, parameters = _UNNEST.bind(
            {name: [row[name] for row in rows] for name in _COLUMNS}
        )
        await conn.execute(statement, parameters)
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


async def clear_events(
    conn: AsyncConnection, *, tenant_id: str | None, older_than: datetime, keep_above: int | None
) -> tuple[int, int]:
    """Delete the events written before `older_than` (one tenant's; every tenant's for
    None) with `event_id <= keep_above` (None: any), in `conn`'s transaction, so the
    deletion and its audit entry commit together; (deleted, old events kept above
    `keep_above`)."""
    old: list[sa.ColumnElement[bool]] = [_table.c.time < older_than]
    if tenant_id is not None:
        old.append(_table.c.tenant_id == tenant_id)
    deletable = [*old] if keep_above is None else [*old, _table.c.event_id <= keep_above]
    deleted = (await conn.execute(sa.delete(_table).where(*deletable))).rowcount or 0
    kept = 0
    if keep_above is not None:
        count = sa.select(sa.func.count()).select_from(_table).where(*old)
        kept = int((await conn.execute(count)).scalar_one())
    return deleted, kept


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

    async def clear(
        self, *, tenant_id: str | None, older_than: datetime, keep_above: int | None
    ) -> tuple[int, int]:
        return await clear_events(
            await self._session.connection(),
            tenant_id=tenant_id,
            older_than=older_than,
            keep_above=keep_above,
        )


class SqlEventReads:
    """`EventReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, tenant_id: str, subject: str) -> Sequence[sa.Row[Any]]:
        async with self._db.read() as conn:
            return await read_history(conn, tenant_id, subject)


# --- the events API (issue 12): history pages, ranges, clearing, outbox cursors -------

_cursors = table_of(EventCursorRow)
_HORIZON = sa.text(
    "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint "
    "FROM pg_current_snapshot() AS s"
)


def _feed_where(query: EventQuery) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_table.c.tenant_id == query.tenant_id]
    for column, value in (
        (_table.c.type, query.type),
        (_table.c.subject, query.subject),
        (_table.c.trace_id, query.trace_id),
    ):
        if value is not None:
            clauses.append(column == value)
    if query.since is not None:
        clauses.append(_table.c.time >= query.since)
    if query.until is not None:
        clauses.append(_table.c.time < query.until)
    if query.through_event_id is not None:
        clauses.append(_table.c.event_id <= query.through_event_id)
    return clauses


class EventId(NamedTuple):
    """An event known by its id alone (`SqlEventFeed.after(ids_only=True)`)."""

    event_id: int


_IDS_AFTER = sa.text(
    "SELECT array_agg(event_id ORDER BY event_id) FROM "
    "(SELECT event_id FROM events WHERE event_id > :after ORDER BY event_id LIMIT :limit) AS page"
).bindparams(sa.bindparam("after", type_=sa.BigInteger), sa.bindparam("limit", type_=sa.Integer))


class SqlEventFeed:
    """`EventFeedReads` (`domain/event_feed.py`) and the outbox's reads: pages in id order
    over `ix_events_tenant_id` (tenant_id, event_id), never OFFSET."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self, query: EventQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        clauses = _feed_where(query)
        if after is not None:
            clauses.append(_table.c.event_id > after[0])
        statement = sa.select(_table).where(*clauses).order_by(_table.c.event_id)
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement.limit(limit + 1))).all()
        return rows

    async def oldest_event_id(self) -> int | None:
        """The lowest event id stored (None: no events)."""
        async with self._db.read() as conn:
            value = (await conn.execute(sa.select(sa.func.min(_table.c.event_id)))).scalar()
        return None if value is None else int(value)

    async def newest_event_id(self) -> int:
        """The highest event id stored (0: no events)."""
        async with self._db.read() as conn:
            value = (await conn.execute(sa.select(sa.func.max(_table.c.event_id)))).scalar()
        return 0 if value is None else int(value)

    async def after(self, event_id: int, limit: int, *, ids_only: bool = False) -> Sequence[Any]:
        """Every tenant's events above `event_id`, in id order, at most `limit`; with
        `ids_only`, rows of `event_id` alone (read from the primary key's index)."""
        if ids_only and not self._db.is_sqlite:
            return await self._ids_after(event_id, limit)
        statement = (
            sa.select(_table.c.event_id if ids_only else _table)
            .where(_table.c.event_id > event_id)
            .order_by(_table.c.event_id)
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows

    async def _ids_after(self, event_id: int, limit: int) -> list[EventId]:
        """`after(ids_only=True)` on PostgreSQL: the ids as one array, not one result row
        each. The events hub tails every committed event even when nobody watches (three
        a job under bench/jobs.py); a result row per id cost ~3 µs of the server's time
        (SQLAlchemy's Row, the driver's record), an array element ~0.3 µs."""
        async with self._db.read() as conn:
            ids = (await conn.execute(_IDS_AFTER, {"after": event_id, "limit": limit})).scalar()
        new = tuple.__new__
        return [new(EventId, (value,)) for value in ids or ()]

    async def horizon(self) -> tuple[int, int]:
        """(the oldest transaction still running, the first not yet begun) of a snapshot
        taken now: every transaction below the first has ended. PostgreSQL: xids of
        `pg_current_snapshot()` (PostgreSQL 13+). SQLite: (0, 0), nothing is running for
        a reader to wait on: one writer at a time, so an id below a committed one that is
        not visible never will be (rolled back, or deleted by a clear or pruning)."""
        if self._db.is_sqlite:
            return 0, 0
        async with self._db.read() as conn:
            row = (await conn.execute(_HORIZON)).one()
        return int(row[0]), int(row[1])

    async def with_ids(
        self, event_ids: Sequence[int], *, ids_only: bool = False
    ) -> Sequence[sa.Row[Any]]:
        """The events of those ids that are stored (now visible), in id order; with
        `ids_only`, rows of `event_id` alone."""
        if not event_ids:
            return []
        ordered = sorted(event_ids)
        rows: list[sa.Row[Any]] = []
        # One bound parameter per id: PostgreSQL (asyncpg) takes at most 32,767.
        for start in range(0, len(ordered), IDS_PER_READ):
            statement = (
                sa.select(_table.c.event_id if ids_only else _table)
                .where(_table.c.event_id.in_(ordered[start : start + IDS_PER_READ]))
                .order_by(_table.c.event_id)
            )
            async with self._db.read() as conn:
                rows += (await conn.execute(statement)).all()
        return rows


async def read_cursor(db: Database, name: str) -> int | None:
    """The position of publisher `name` (None: it never published)."""
    async with db.read() as conn:
        value = (
            await conn.execute(sa.select(_cursors.c.position).where(_cursors.c.name == name))
        ).scalar()
    return None if value is None else int(value)


async def write_cursor(db: Database, name: str, position: int) -> None:
    """Move publisher `name`'s cursor forward to `position` (never back: replicas
    publishing at once may report in any order)."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        conn = await session.connection()
        moved = await conn.execute(
            sa.update(_cursors)
            .where(_cursors.c.name == name)
            .values(
                position=sa.case(
                    (_cursors.c.position < position, position), else_=_cursors.c.position
                ),
                updated_at=now,
            )
        )
        if not moved.rowcount:
            insert = (
                postgresql.insert(_cursors).on_conflict_do_nothing()
                if conn.dialect.name == "postgresql"
                else sa.insert(_cursors).prefix_with("OR IGNORE")
            )
            await conn.execute(insert.values(name=name, position=position, updated_at=now))
