"""Backfills in SQL (issue 10): the repositories `server/domain/backfills.py` describes.
No commits here; a unit of work commits.

- Suppression: a tenant's backfills of one scope whose window overlaps
  (`window_start < :end AND window_end > :start`, `ix_backfills_scope`), serialised per
  (tenant, scope) on PostgreSQL by `pg_advisory_xact_lock` of the pair's hash, so two
  identical requests cannot both find none.
- Progress: one `GROUP BY backfill_id, status` over `backfill_jobs LEFT JOIN jobs`; a
  link whose job was pruned counts under status NULL.
- Cancel: the waiting jobs the backfill created, locked (`FOR UPDATE` on PostgreSQL),
  then one UPDATE guarded by their status.
- Listing: keyset over (created_at DESC, backfill_id DESC) on
  `ix_backfills_tenant_created_id`; never OFFSET.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.backfills import (
    BACKFILL,
    BACKFILL_LISTING,
    CANCELED,
    WAITING,
    Backfill,
    BackfillQuery,
    CanceledJob,
    JobCounts,
)
from server.domain.errors import NotFound
from server.domain.job_states import JobStatus
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.tables import BackfillJobRow, BackfillRow, JobRow, table_of

_table = table_of(BackfillRow)
_links = table_of(BackfillJobRow)
_jobs = table_of(JobRow)
_COLUMNS = tuple(field.name for field in fields(Backfill))


def _where(query: BackfillQuery) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_table.c.tenant_id == query.tenant_id]
    for column, value in (
        (_table.c.project_id, query.project_id),
        (_table.c.source_id, query.source_id),
        (_table.c.job_type, query.job_type),
    ):
        if value is not None:
            clauses.append(column == value)
    return clauses


def _one(tenant_id: str, backfill_id: str, project_id: str | None) -> sa.Select[Any]:
    clauses = [_table.c.tenant_id == tenant_id, _table.c.backfill_id == backfill_id]
    if project_id is not None:
        clauses.append(_table.c.project_id == project_id)
    return sa.select(_table).where(*clauses)


def _aware(value: datetime | str | None) -> datetime | None:
    """`max()` over a timestamp comes back as text from SQLite, and naive."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _backfill(row: sa.Row[Any]) -> Backfill:
    values = row._asdict()
    for name in ("window_start", "window_end", "created_at", "updated_at"):
        values[name] = _aware(values[name])
    return Backfill(**values)


async def read_counts(conn: AsyncConnection, backfill_ids: Sequence[str]) -> dict[str, JobCounts]:
    """The linked jobs of each backfill by status (None: pruned) and the latest finish."""
    if not backfill_ids:
        return {}
    statement = (
        sa.select(
            _links.c.backfill_id,
            _jobs.c.status,
            sa.func.count().label("n"),
            sa.func.max(_jobs.c.finished_at).label("last_finished_at"),
        )
        .select_from(_links.outerjoin(_jobs, _jobs.c.job_id == _links.c.job_id))
        .where(_links.c.backfill_id.in_(sorted(set(backfill_ids))))
        .group_by(_links.c.backfill_id, _jobs.c.status)
    )
    by_status: dict[str, dict[str | None, int]] = {}
    last: dict[str, datetime] = {}
    for row in (await conn.execute(statement)).all():
        by_status.setdefault(row.backfill_id, {})[row.status] = int(row.n)
        finished = _aware(row.last_finished_at)
        if finished is not None and (
            row.backfill_id not in last or finished > last[row.backfill_id]
        ):
            last[row.backfill_id] = finished
    return {
        backfill_id: JobCounts(by_status=counts, last_finished_at=last.get(backfill_id))
        for backfill_id, counts in by_status.items()
    }


class SqlBackfillReads:
    """`BackfillReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, backfill_id: str, *, project_id: str | None) -> Backfill:
        async with self._db.read() as conn:
            row = (await conn.execute(_one(tenant_id, backfill_id, project_id))).first()
        if row is None:
            raise NotFound.of(BACKFILL, backfill_id)
        return _backfill(row)

    async def page(
        self, query: BackfillQuery, after: tuple[Any, ...] | None, limit: int
    ) -> list[Backfill]:
        statement = keyset_select(_table, BACKFILL_LISTING, _where(query), after=after, limit=limit)
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [_backfill(row) for row in rows]

    async def counts(self, backfill_ids: Sequence[str]) -> Mapping[str, JobCounts]:
        async with self._db.read() as conn:
            return await read_counts(conn, backfill_ids)


class SqlBackfillRepository:
    """`BackfillRepository` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _conn(self) -> AsyncConnection:
        return await self._session.connection()

    async def lock_scope(self, tenant_id: str, scope: str) -> None:
        conn = await self._conn()
        if conn.dialect.name == "postgresql":
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"backfill\x1f{tenant_id}\x1f{scope}"},
            )

    async def overlapping(
        self, tenant_id: str, scope: str, start: datetime, end: datetime
    ) -> list[Backfill]:
        statement = (
            sa.select(_table)
            .where(
                _table.c.tenant_id == tenant_id,
                _table.c.scope == scope,
                _table.c.status != CANCELED,
                _table.c.window_start < end,
                _table.c.window_end > start,
            )
            .order_by(_table.c.created_at.desc(), _table.c.backfill_id.desc())
        )
        rows = (await (await self._conn()).execute(statement)).all()
        return [_backfill(row) for row in rows]

    async def add(self, backfill: Backfill, jobs: Sequence[tuple[str, bool]]) -> None:
        conn = await self._conn()
        await conn.execute(
            sa.insert(_table).values(**{name: getattr(backfill, name) for name in _COLUMNS})
        )
        if jobs:
            await conn.execute(
                sa.insert(_links),
                [
                    {"backfill_id": backfill.backfill_id, "job_id": job_id, "created": created}
                    for job_id, created in jobs
                ],
            )

    async def get(
        self, tenant_id: str, backfill_id: str, *, project_id: str | None, lock: bool = False
    ) -> Backfill:
        statement = _one(tenant_id, backfill_id, project_id)
        if lock:
            statement = statement.with_for_update()
        row = (await (await self._conn()).execute(statement)).first()
        if row is None:
            raise NotFound.of(BACKFILL, backfill_id)
        return _backfill(row)

    async def counts(self, backfill_ids: Sequence[str]) -> Mapping[str, JobCounts]:
        return await read_counts(await self._conn(), backfill_ids)

    async def cancel_waiting(self, backfill_id: str, *, now: datetime) -> list[CanceledJob]:
        conn = await self._conn()
        chosen = (
            sa.select(_jobs.c.job_id, _jobs.c.status, _jobs.c.attempts)
            .join(_links, _links.c.job_id == _jobs.c.job_id)
            .where(
                _links.c.backfill_id == backfill_id,
                _links.c.created.is_(True),
                _jobs.c.status.in_(WAITING),
            )
            .order_by(_jobs.c.job_id)
            .with_for_update(of=_jobs)
        )
        found = [
            CanceledJob(job_id=row.job_id, status=row.status, attempts=row.attempts)
            for row in (await conn.execute(chosen)).all()
        ]
        if found:
            await conn.execute(
                sa.update(_jobs)
                .where(
                    _jobs.c.job_id.in_([job.job_id for job in found]), _jobs.c.status.in_(WAITING)
                )
                .values(
                    status=JobStatus.CANCELED.value,
                    next_eligible_at=None,
                    updated_at=now,
                    finished_at=now,
                )
            )
        return found

    async def update(self, backfill: Backfill) -> None:
        await (await self._conn()).execute(
            sa.update(_table)
            .where(_table.c.backfill_id == backfill.backfill_id)
            .values(status=backfill.status, updated_at=backfill.updated_at)
        )
