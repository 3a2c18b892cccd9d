"""The SQL implementation of the domain's `Store` and `UnitOfWork` (`domain/units.py`).

A unit of work is one `Database.transaction()`: every repository of it shares the
session, so a change and its audit entry commit together or roll back together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.audit import AuditEntry
from server.domain.events import NewEvent
from server.domain.job_endings import JobEnding, JobEndings
from server.domain.jobs import Job
from server.storage.db import Database
from server.storage.repositories.audit import SqlAuditLog, SqlAuditReads
from server.storage.repositories.backfills import SqlBackfillReads, SqlBackfillRepository
from server.storage.repositories.events import SqlEventLog, SqlEventReads
from server.storage.repositories.jobs import SqlJobReads, SqlJobRepository, insert_plain_job
from server.storage.repositories.leases import SqlLeases
from server.storage.repositories.pack_runs import SqlPackRunReads, SqlPackRunRepository
from server.storage.repositories.quotas import SqlQuotaReads, SqlQuotaRepository
from server.storage.repositories.schedules import SqlScheduleReads, SqlScheduleRepository
from server.storage.repositories.sources import SqlSourceReads, SqlSourceRepository
from server.storage.wakeups import Wakeups


class SqlUnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.ended: list[JobEnding] = []  # owned jobs it ended, announced after the commit
        self.sources = SqlSourceRepository(session)
        self.audit = SqlAuditLog(session)
        self.events = SqlEventLog(session)
        self.jobs = SqlJobRepository(session, self.ended)
        self.quotas = SqlQuotaRepository(session)
        self.pack_runs = SqlPackRunRepository(session)
        self.schedules = SqlScheduleRepository(session)
        self.backfills = SqlBackfillRepository(session)


class SqlStore:
    """`wakeups` announces new work to long-polling workers (`storage/wakeups.py`);
    `clock` is the engine's time in seconds since the epoch (tests move it)."""

    def __init__(
        self,
        db: Database,
        wakeups: Wakeups | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.db = db
        self.wakeups = wakeups or Wakeups()
        self.endings = JobEndings()  # owned jobs that ended (domain/job_endings.py)
        self.leases = SqlLeases(db, self.wakeups, clock, self.endings)
        self._autocommit = (
            None if db.is_sqlite else db.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.sources = SqlSourceReads(db)
        self.audit = SqlAuditReads(db)
        self.events = SqlEventReads(db)
        self.jobs = SqlJobReads(db)
        self.quotas = SqlQuotaReads(db)
        self.pack_runs = SqlPackRunReads(db)
        self.schedules = SqlScheduleReads(db)
        self.backfills = SqlBackfillReads(db)

    def notify_work(self, tenant_id: str, job_type: str, count: int = 1) -> None:
        self.wakeups.notify(tenant_id, job_type, count)

    async def insert_plain_job(self, job: Job, event: NewEvent, entry: AuditEntry) -> bool:
        if self._autocommit is None:  # SQLite: the transaction is in-process already
            return False
        return await insert_plain_job(self._autocommit, job, event, entry)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlUnitOfWork]:
        async with self.db.transaction() as session:
            uow = SqlUnitOfWork(session)
            yield uow
        self.endings.publish(uow.ended)  # committed: the unit of work's ended jobs
