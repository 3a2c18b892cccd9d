"""The SQL implementation of the domain's `Store` and `UnitOfWork` (`domain/units.py`).

A unit of work is one `Database.transaction()`: every repository of it shares the
session, so a change and its audit entry commit together or roll back together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlmodel.ext.asyncio.session import AsyncSession

from server.storage.db import Database
from server.storage.repositories.audit import SqlAuditLog, SqlAuditReads
from server.storage.repositories.events import SqlEventLog, SqlEventReads
from server.storage.repositories.quotas import SqlQuotaReads, SqlQuotaRepository
from server.storage.repositories.sources import SqlSourceReads, SqlSourceRepository


class SqlUnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.sources = SqlSourceRepository(session)
        self.audit = SqlAuditLog(session)
        self.events = SqlEventLog(session)
        self.quotas = SqlQuotaRepository(session)


class SqlStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.sources = SqlSourceReads(db)
        self.audit = SqlAuditReads(db)
        self.events = SqlEventReads(db)
        self.quotas = SqlQuotaReads(db)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlUnitOfWork]:
        async with self.db.transaction() as session:
            yield SqlUnitOfWork(session)
