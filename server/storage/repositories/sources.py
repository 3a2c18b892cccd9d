"""Sources in SQL: the named queries and the repositories the domain's Protocols
(`server/domain/sources.py`) describe. No commits here; a unit of work commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.errors import AlreadyExists, NotFound
from server.domain.sources import SOURCE, SOURCE_LISTING, Source, SourceQuery
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.tables import SourceRow, table_of

_table = table_of(SourceRow)


def _where(query: SourceQuery) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_table.c.tenant_id == query.tenant_id]
    if query.project_id is not None:
        clauses.append(_table.c.project_id == query.project_id)
    if query.source_type is not None:
        clauses.append(_table.c.source_type == query.source_type)
    if query.enabled is not None:
        clauses.append(_table.c.enabled == query.enabled)
    return clauses


def _one(tenant_id: str, source_id: str, project_id: str | None) -> sa.Select[Any]:
    clauses = [_table.c.tenant_id == tenant_id, _table.c.source_id == source_id]
    if project_id is not None:
        clauses.append(_table.c.project_id == project_id)
    return sa.select(_table).where(*clauses)


async def read_source(
    conn: AsyncConnection, *, tenant_id: str, source_id: str, project_id: str | None = None
) -> sa.Row[Any] | None:
    """The read path for one source: SQLAlchemy Core, no session or identity map."""
    row: sa.Row[Any] | None = (await conn.execute(_one(tenant_id, source_id, project_id))).first()
    return row


class SqlSourceReads:
    """`SourceReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, source_id: str, *, project_id: str | None) -> sa.Row[Any]:
        async with self._db.read() as conn:
            row = await read_source(
                conn, tenant_id=tenant_id, source_id=source_id, project_id=project_id
            )
        if row is None:
            raise NotFound.of(SOURCE, source_id)
        return row  # a Core row has the attributes of SourceLike

    async def page(
        self, query: SourceQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        statement = keyset_select(_table, SOURCE_LISTING, _where(query), after=after, limit=limit)
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows


class SqlSourceRepository:
    """`SourceRepository` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, source: Source) -> None:
        taken = sa.select(_table.c.source_id).where(
            _table.c.tenant_id == source.tenant_id, _table.c.name == source.name
        )
        if (await (await self._session.connection()).execute(taken)).first() is not None:
            raise AlreadyExists.of(SOURCE, "name", source.name)
        try:
            await (await self._session.connection()).execute(
                sa.insert(_table).values(**_values(source))
            )
        except sa.exc.IntegrityError as exc:  # a concurrent registration won the race
            raise AlreadyExists.of(SOURCE, "name", source.name) from exc

    async def get(self, tenant_id: str, source_id: str, *, project_id: str | None) -> Source:
        row = (
            await (await self._session.connection()).execute(_one(tenant_id, source_id, project_id))
        ).first()
        if row is None:
            raise NotFound.of(SOURCE, source_id)
        return Source(**row._asdict())

    async def find_by_name(self, tenant_id: str, name: str) -> Source | None:
        statement = sa.select(_table).where(_table.c.tenant_id == tenant_id, _table.c.name == name)
        row = (await (await self._session.connection()).execute(statement)).first()
        return None if row is None else Source(**row._asdict())

    async def update(self, source: Source) -> None:
        values = _values(source)
        del values["source_id"], values["tenant_id"], values["created_at"]
        await (await self._session.connection()).execute(
            sa.update(_table)
            .where(_table.c.tenant_id == source.tenant_id, _table.c.source_id == source.source_id)
            .values(**values)
        )


def _values(source: Source) -> dict[str, Any]:
    return {
        "source_id": source.source_id,
        "tenant_id": source.tenant_id,
        "project_id": source.project_id,
        "name": source.name,
        "source_type": source.source_type,
        "enabled": source.enabled,
        "paused": source.paused,
        "created_at": source.created_at,
        "updated_at": source.updated_at,
    }
