"""Quotas in SQL: the repositories `server/domain/quotas.py` describes. No commits here;
a unit of work commits.

Reads are one SQLAlchemy Core statement each: the quota rows with their last-hour
count as a correlated sum over `quota_minutes` (at most 60 primary-key rows per
quota) and, for the summary, the tenant's throttled jobs of each job type as a
correlated count that `ix_jobs_ready` serves (status 'throttled' is inside its
predicate). Usage columns (`active`, the bucket) belong to the lease path; the
settings writes here leave `active` alone and lock the row first, as the lease does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.errors import AlreadyExists, NotFound
from server.domain.job_states import JobStatus
from server.domain.quotas import QUOTA_LISTING, Quota, QuotaQuery
from server.domain.resources import QUOTA
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.tables import JobRow, QuotaMinuteRow, QuotaRow, table_of

_table = table_of(QuotaRow)
_minutes = table_of(QuotaMinuteRow)
_jobs = table_of(JobRow)
# What the lease path owns: never written by a settings change.
_USAGE_ONLY = frozenset({"quota_id", "tenant_id", "job_type", "active", "created_at"})


def last_hour_column(after_minute: int) -> sa.Label[Any]:
    """The quota's leases in the minutes after `after_minute`, correlated to `quotas`."""
    total = (
        sa.select(sa.func.coalesce(sa.func.sum(_minutes.c.count), 0))
        .where(_minutes.c.quota_id == _table.c.quota_id, _minutes.c.minute > after_minute)
        .scalar_subquery()
    )
    return total.label("last_hour")


def _throttled_column() -> sa.Label[Any]:
    count = (
        sa.select(sa.func.count())
        .select_from(_jobs)
        .where(
            _jobs.c.tenant_id == _table.c.tenant_id,
            _jobs.c.job_type == _table.c.job_type,
            _jobs.c.status == JobStatus.THROTTLED.value,
        )
        .scalar_subquery()
    )
    return count.label("throttled_jobs")


def _where(query: QuotaQuery) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_table.c.tenant_id == query.tenant_id]
    if query.job_type is not None:
        clauses.append(_table.c.job_type == query.job_type)
    if query.paused is not None:
        clauses.append(_table.c.paused == query.paused)
    return clauses


def _one(tenant_id: str, quota_id: str) -> list[sa.ColumnElement[bool]]:
    return [_table.c.tenant_id == tenant_id, _table.c.quota_id == quota_id]


class SqlQuotaReads:
    """`QuotaReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, quota_id: str, *, after_minute: int) -> sa.Row[Any]:
        statement = sa.select(_table, last_hour_column(after_minute)).where(
            *_one(tenant_id, quota_id)
        )
        async with self._db.read() as conn:
            row: sa.Row[Any] | None = (await conn.execute(statement)).first()
        if row is None:
            raise NotFound.of(QUOTA, quota_id)
        return row  # a Core row has the attributes of QuotaRead

    async def page(
        self, query: QuotaQuery, after: tuple[Any, ...] | None, limit: int, *, after_minute: int
    ) -> Sequence[sa.Row[Any]]:
        statement = keyset_select(
            _table, QUOTA_LISTING, _where(query), after=after, limit=limit
        ).add_columns(last_hour_column(after_minute))
        return await self._all(statement)

    async def summary(self, tenant_id: str, *, after_minute: int) -> Sequence[sa.Row[Any]]:
        statement = (
            sa.select(_table, last_hour_column(after_minute), _throttled_column())
            .where(_table.c.tenant_id == tenant_id)
            .order_by(_table.c.job_type, _table.c.quota_id)
        )
        return await self._all(statement)

    async def _all(self, statement: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows


class SqlQuotaRepository:
    """`QuotaRepository` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _conn(self) -> AsyncConnection:
        return await self._session.connection()

    async def add(self, quota: Quota) -> None:
        conn = await self._conn()
        taken = sa.select(_table.c.quota_id).where(
            _table.c.tenant_id == quota.tenant_id, _table.c.job_type == quota.job_type
        )
        if (await conn.execute(taken)).first() is not None:
            raise AlreadyExists.of(QUOTA, "jobType", quota.job_type)
        try:
            await conn.execute(sa.insert(_table).values(**_values(quota)))
        except sa.exc.IntegrityError as exc:  # a concurrent create won the race
            raise AlreadyExists.of(QUOTA, "jobType", quota.job_type) from exc

    async def lock(self, tenant_id: str, quota_id: str) -> Quota:
        """PostgreSQL: `SELECT .. FOR UPDATE`. SQLite has no row locks: a write that
        changes nothing takes the database's write lock before the read, so the read
        cannot go stale before this transaction writes (WAL's BUSY_SNAPSHOT)."""
        conn = await self._conn()
        statement = sa.select(_table).where(*_one(tenant_id, quota_id))
        if conn.dialect.name == "sqlite":
            await conn.execute(
                sa.update(_table).where(*_one(tenant_id, quota_id)).values(version=_table.c.version)
            )
        else:
            statement = statement.with_for_update()
        row = (await conn.execute(statement)).first()
        if row is None:
            raise NotFound.of(QUOTA, quota_id)
        return Quota(**row._asdict())

    async def update(self, quota: Quota) -> None:
        values = {k: v for k, v in _values(quota).items() if k not in _USAGE_ONLY}
        await (await self._conn()).execute(
            sa.update(_table).where(*_one(quota.tenant_id, quota.quota_id)).values(**values)
        )

    async def delete(self, quota: Quota) -> None:
        conn = await self._conn()
        await conn.execute(sa.delete(_minutes).where(_minutes.c.quota_id == quota.quota_id))
        await conn.execute(sa.delete(_table).where(*_one(quota.tenant_id, quota.quota_id)))

    async def last_hour(self, quota_id: str, *, after_minute: int) -> int:
        statement = sa.select(sa.func.coalesce(sa.func.sum(_minutes.c.count), 0)).where(
            _minutes.c.quota_id == quota_id, _minutes.c.minute > after_minute
        )
        return int((await (await self._conn()).execute(statement)).scalar_one())

    async def release_throttled(self, tenant_id: str, job_type: str, *, now: datetime) -> int:
        j = _jobs.c
        statement = (
            sa.update(_jobs)
            .where(
                j.tenant_id == tenant_id,
                j.job_type == job_type,
                j.status == JobStatus.THROTTLED.value,
                j.next_eligible_at > now,
            )
            .values(next_eligible_at=now)
        )
        result = await (await self._conn()).execute(statement)
        return int(result.rowcount or 0)


def _values(quota: Quota) -> dict[str, Any]:
    return {
        "quota_id": quota.quota_id,
        "tenant_id": quota.tenant_id,
        "job_type": quota.job_type,
        "max_active": quota.max_active,
        "max_per_hour": quota.max_per_hour,
        "burst": quota.burst,
        "refill_per_second": quota.refill_per_second,
        "paused": quota.paused,
        "pause_reason": quota.pause_reason,
        "active": quota.active,
        "tokens": quota.tokens,
        "tokens_at": quota.tokens_at,
        "version": quota.version,
        "created_at": quota.created_at,
        "updated_at": quota.updated_at,
        "updated_by": quota.updated_by,
    }
