"""Schedules in SQL (issue 10): the repositories `server/domain/schedules.py` describes.
No commits here; a unit of work commits.

Claiming due schedules is DESIGN §9's "rows with a due time, claimed with SKIP LOCKED":
`SELECT .. FROM schedules WHERE next_run_at <= :now ORDER BY next_run_at LIMIT :n FOR
UPDATE SKIP LOCKED` on PostgreSQL (over `ix_schedules_due`), so replicas firing at once
split the due rows and never take one twice; SQLite serialises writers (one process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.schedules import Schedule
from server.storage.db import Database
from server.storage.tables import ScheduleRow, table_of

_table = table_of(ScheduleRow)
_COLUMNS = tuple(field.name for field in fields(Schedule))
# The due time of a schedule whose expression never fires again.
NEVER = datetime(9999, 12, 31, tzinfo=UTC)


def _schedule(row: sa.Row[Any]) -> Schedule:
    values = row._asdict()
    for name in ("next_run_at", "last_run_at", "created_at", "updated_at"):
        value = values[name]
        if value is not None and value.tzinfo is None:  # SQLite hands back naive UTC
            values[name] = value.replace(tzinfo=UTC)
    return Schedule(**values)


class SqlScheduleReads:
    """`ScheduleReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_sources(
        self, tenant_id: str, source_ids: Sequence[str]
    ) -> Mapping[str, sa.Row[Any]]:
        if not source_ids:
            return {}
        statement = sa.select(_table).where(
            _table.c.tenant_id == tenant_id, _table.c.source_id.in_(source_ids)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return {row.source_id: row for row in rows}


class SqlScheduleRepository:
    """`ScheduleRepository` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _conn(self) -> AsyncConnection:
        return await self._session.connection()

    async def add(self, schedule: Schedule) -> None:
        values = {name: getattr(schedule, name) for name in _COLUMNS}
        await (await self._conn()).execute(sa.insert(_table).values(**values))

    async def get(self, tenant_id: str, source_id: str) -> Schedule | None:
        statement = sa.select(_table).where(
            _table.c.tenant_id == tenant_id, _table.c.source_id == source_id
        )
        row = (await (await self._conn()).execute(statement)).first()
        return None if row is None else _schedule(row)

    async def claim_due(self, now: datetime, limit: int) -> list[Schedule]:
        statement = (
            sa.select(_table)
            .where(_table.c.next_run_at <= now)
            .order_by(_table.c.next_run_at, _table.c.source_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = (await (await self._conn()).execute(statement)).all()
        return [_schedule(row) for row in rows]

    async def advance(
        self,
        source_id: str,
        *,
        next_run_at: datetime | None,
        last_run_at: datetime | None,
        now: datetime,
    ) -> None:
        values: dict[str, Any] = {"next_run_at": next_run_at or NEVER, "updated_at": now}
        if last_run_at is not None:
            values["last_run_at"] = last_run_at
        await (await self._conn()).execute(
            sa.update(_table).where(_table.c.source_id == source_id).values(**values)
        )
