"""The mesh registry in SQL (`server/domain/registry.py`): entries, OpenAPI snapshots and
peer states, read with Core statements and written inside a unit of work.

`SqlRegistryStore` opens units of work of its own kind: a `SqlUnitOfWork` (so the
audit log and events share the transaction) with the registry's repository added.
A write replaces exactly the entry it read (same revision, origin and time) or
raises ConcurrentChange, which the domain retries: two concurrent writers of one
name never both win. No commits here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.openapi_drift import Outline
from server.domain.registry import (
    SERVICE_LISTING,
    ConcurrentChange,
    PeerState,
    ServiceEntry,
    ServiceQuery,
    Snapshot,
)
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.store import SqlUnitOfWork
from server.storage.tables import MeshPeerRow, RegistryServiceRow, RegistrySnapshotRow, table_of

_services = table_of(RegistryServiceRow)
_snapshots = table_of(RegistrySnapshotRow)
_peers = table_of(MeshPeerRow)


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive UTC; PostgreSQL aware values."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _maybe_aware(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def entry_of(row: Any) -> ServiceEntry:
    return ServiceEntry(
        name=row.name,
        base_url=row.base_url,
        openapi_url=row.openapi_url,
        version=row.version,
        metadata=json.loads(row.metadata_json),
        revision=int(row.revision),
        origin=row.origin,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def _values(entry: ServiceEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "base_url": entry.base_url,
        "openapi_url": entry.openapi_url,
        "version": entry.version,
        "metadata_json": json.dumps(
            dict(entry.metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ),
        "revision": entry.revision,
        "origin": entry.origin,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
    }


def _peer_of(row: Any) -> PeerState:
    return PeerState(
        url=row.url,
        status=row.status,
        last_contact_at=_maybe_aware(row.last_contact_at),
        last_attempt_at=_maybe_aware(row.last_attempt_at),
        last_error=row.last_error,
        registry_version=row.registry_version,
    )


class SqlServiceRepository:
    """`ServiceRepository` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _execute(self, statement: sa.Executable) -> sa.CursorResult[Any]:
        conn = await self._session.connection()
        return await conn.execute(statement)

    async def get(self, name: str) -> ServiceEntry | None:
        statement = sa.select(_services).where(_services.c.name == name)
        if (await self._session.connection()).dialect.name == "postgresql":
            statement = statement.with_for_update()
        row = (await self._execute(statement)).first()
        return None if row is None else entry_of(row)

    async def save(self, entry: ServiceEntry, *, replacing: ServiceEntry | None) -> None:
        values = _values(entry)
        if replacing is None:
            try:
                await self._execute(sa.insert(_services).values(**values))
            except sa.exc.IntegrityError as exc:
                raise ConcurrentChange(f"service {entry.name!r} was registered meanwhile") from exc
            return
        del values["name"]
        result = await self._execute(
            sa.update(_services)
            .where(
                _services.c.name == entry.name,
                _services.c.revision == replacing.revision,
                _services.c.origin == replacing.origin,
                _services.c.updated_at == replacing.updated_at,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise ConcurrentChange(f"service {entry.name!r} changed meanwhile")

    async def latest_snapshot(self, name: str) -> Snapshot | None:
        statement = (
            sa.select(_snapshots)
            .where(_snapshots.c.service_name == name)
            .order_by(_snapshots.c.fetched_at.desc(), _snapshots.c.snapshot_id.desc())
            .limit(1)
        )
        row = (await self._execute(statement)).first()
        if row is None:
            return None
        return Snapshot(
            snapshot_id=row.snapshot_id,
            service_name=row.service_name,
            openapi_url=row.openapi_url,
            fetched_at=_aware(row.fetched_at),
            digest=row.digest,
            size_bytes=int(row.size_bytes),
            outline=Outline.from_json(row.outline),
            document=row.document,
        )

    async def add_snapshot(self, snapshot: Snapshot, *, keep: int) -> None:
        await self._execute(
            sa.insert(_snapshots).values(
                snapshot_id=snapshot.snapshot_id,
                service_name=snapshot.service_name,
                openapi_url=snapshot.openapi_url,
                fetched_at=snapshot.fetched_at,
                digest=snapshot.digest,
                size_bytes=snapshot.size_bytes,
                outline=snapshot.outline.to_json(),
                document=snapshot.document,
            )
        )
        kept = (
            sa.select(_snapshots.c.snapshot_id)
            .where(_snapshots.c.service_name == snapshot.service_name)
            .order_by(_snapshots.c.fetched_at.desc(), _snapshots.c.snapshot_id.desc())
            .limit(keep)
        )
        await self._execute(
            sa.delete(_snapshots).where(
                _snapshots.c.service_name == snapshot.service_name,
                _snapshots.c.snapshot_id.not_in(kept.scalar_subquery()),
            )
        )

    async def save_peer(self, state: PeerState) -> None:
        values = {
            "status": state.status,
            "last_contact_at": state.last_contact_at,
            "last_attempt_at": state.last_attempt_at,
            "last_error": state.last_error,
            "registry_version": state.registry_version,
        }
        result = await self._execute(
            sa.update(_peers).where(_peers.c.url == state.url).values(**values)
        )
        if result.rowcount == 0:
            try:
                await self._execute(sa.insert(_peers).values(url=state.url, **values))
            except sa.exc.IntegrityError as exc:
                raise ConcurrentChange(f"peer {state.url} was recorded meanwhile") from exc


class SqlRegistryUnit(SqlUnitOfWork):
    """A unit of work with the registry's repository."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.registry = SqlServiceRepository(session)


def _where(query: ServiceQuery) -> list[sa.ColumnElement[bool]]:
    if query.name_prefix is None:
        return []
    # Byte-wise range instead of LIKE: no wildcard escaping, and the primary key serves it.
    return [
        _services.c.name >= query.name_prefix,
        _services.c.name < query.name_prefix + "\U0010ffff",
    ]


class SqlRegistryStore:
    """`RegistryStore`: reads take one pooled connection each; units of work are
    transactions of their own."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self, query: ServiceQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[ServiceEntry]:
        statement = keyset_select(
            _services, SERVICE_LISTING, _where(query), after=after, limit=limit
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [entry_of(row) for row in rows]

    async def entries(self, names: Sequence[str] | None = None) -> Sequence[ServiceEntry]:
        statement = sa.select(_services).order_by(_services.c.name)
        if names is not None:
            statement = statement.where(_services.c.name.in_(list(names)))
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [entry_of(row) for row in rows]

    async def keys(self) -> Sequence[tuple[str, int, datetime, str]]:
        columns = (_services.c.name, _services.c.revision, _services.c.updated_at)
        statement = sa.select(*columns, _services.c.origin)
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [(r.name, int(r.revision), _aware(r.updated_at), r.origin) for r in rows]

    async def peers(self) -> Sequence[PeerState]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(_peers).order_by(_peers.c.url))).all()
        return [_peer_of(row) for row in rows]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlRegistryUnit]:
        async with self._db.transaction() as session:
            yield SqlRegistryUnit(session)
