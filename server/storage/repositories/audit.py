"""Audit entries: append-only, written inside the caller's transaction, read newest first.

The listing is keyset pagination over (created_at DESC, entry_id DESC), which the
index (tenant_id, created_at, entry_id) serves backwards; never OFFSET.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.storage.tables import AuditEntryRow, table_of

_table = table_of(AuditEntryRow)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What a listing is narrowed to; None means "any". `since` is inclusive, `until`
    exclusive, both aware UTC datetimes."""

    tenant_id: str
    action: str | None = None
    actor: str | None = None
    resource: str | None = None
    trace_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def add_audit_entry(session: AsyncSession, entry: AuditEntryRow) -> None:
    session.add(entry)


def _where(flt: AuditFilter) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_table.c.tenant_id == flt.tenant_id]
    for column, value in (
        (_table.c.action, flt.action),
        (_table.c.actor, flt.actor),
        (_table.c.resource, flt.resource),
        (_table.c.trace_id, flt.trace_id),
    ):
        if value is not None:
            clauses.append(column == value)
    if flt.since is not None:
        clauses.append(_table.c.created_at >= flt.since)
    if flt.until is not None:
        clauses.append(_table.c.created_at < flt.until)
    return clauses


async def list_audit_page(
    conn: AsyncConnection,
    *,
    flt: AuditFilter,
    before: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[sa.Row[Any]]:
    """Up to `limit + 1` entries older than `(created_at, entry_id)`, newest first; the
    extra row says "more"."""
    clauses = _where(flt)
    if before is not None:
        created_at, entry_id = before
        # Typed binds: SQLite compares the stored text form of the time, so the bound
        # value must be formatted by the column's own type.
        position = sa.tuple_(
            sa.literal(created_at, _table.c.created_at.type),
            sa.literal(entry_id, _table.c.entry_id.type),
        )
        clauses.append(sa.tuple_(_table.c.created_at, _table.c.entry_id) < position)
    query = (
        sa.select(_table)
        .where(*clauses)
        .order_by(_table.c.created_at.desc(), _table.c.entry_id.desc())
        .limit(limit + 1)
    )
    return (await conn.execute(query)).all()
