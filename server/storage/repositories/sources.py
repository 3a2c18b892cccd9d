"""Named queries over `sources`; keyset pagination, never OFFSET; no commits here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from server.storage.tables import SourceRow, table_of

_table = table_of(SourceRow)


@dataclass(frozen=True, slots=True)
class SourceFilter:
    tenant_id: str
    project_id: str | None = None
    source_type: str | None = None
    enabled: bool | None = None


def _where(flt: SourceFilter) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_table.c.tenant_id == flt.tenant_id]
    if flt.project_id is not None:
        clauses.append(_table.c.project_id == flt.project_id)
    if flt.source_type is not None:
        clauses.append(_table.c.source_type == flt.source_type)
    if flt.enabled is not None:
        clauses.append(_table.c.enabled == flt.enabled)
    return clauses


async def list_sources_page(
    conn: AsyncConnection,
    *,
    flt: SourceFilter,
    after: tuple[str, str] | None,
    limit: int,
) -> Sequence[sa.Row[tuple[SourceRow]]]:
    """Up to `limit + 1` rows after `(name, source_id)`; the extra row says "more"."""
    clauses = _where(flt)
    if after is not None:
        clauses.append(sa.tuple_(_table.c.name, _table.c.source_id) > sa.tuple_(*after))
    query = (
        sa.select(_table)
        .where(*clauses)
        .order_by(_table.c.name, _table.c.source_id)
        .limit(limit + 1)
    )
    return (await conn.execute(query)).all()


async def read_source(
    conn: AsyncConnection, *, tenant_id: str, source_id: str, project_id: str | None = None
) -> sa.Row[Any] | None:
    """The read path for one source: SQLAlchemy Core, no session or identity map."""
    clauses = [_table.c.tenant_id == tenant_id, _table.c.source_id == source_id]
    if project_id is not None:
        clauses.append(_table.c.project_id == project_id)
    return (await conn.execute(sa.select(_table).where(*clauses))).first()


async def get_source(
    session: AsyncSession, *, tenant_id: str, source_id: str, project_id: str | None = None
) -> SourceRow | None:
    query = select(SourceRow).where(
        SourceRow.tenant_id == tenant_id, SourceRow.source_id == source_id
    )
    if project_id is not None:
        query = query.where(SourceRow.project_id == project_id)
    return (await session.exec(query)).first()


async def find_source_by_name(
    session: AsyncSession, *, tenant_id: str, name: str
) -> SourceRow | None:
    query = select(SourceRow).where(SourceRow.tenant_id == tenant_id, col(SourceRow.name) == name)
    return (await session.exec(query)).first()
