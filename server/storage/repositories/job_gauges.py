"""The job gauges of /metrics (server/observability/domain_gauges.py): counts a partial
index answers, never a scan of the jobs table.

- jobs waiting to be leased, by tenant and job type: the WHERE is spelled exactly as
  the partial index `ix_jobs_ready` is (`JOBS_READY_PREDICATE`) and SQLite is told to
  use it (`INDEXED BY`: without statistics it may pick an index in GROUP BY order that
  holds every job): one pass over the waiting jobs' index entries, in (tenant, job
  type) order, no sort. PostgreSQL plans it from its statistics (the partial index, or
  a scan when most rows wait). The cost grows with the backlog, not with the history.
- leased jobs, by tenant and job type: the partial index `ix_jobs_lease_expiry`
  (status = 'leased'), as many entries as workers hold leases, grouped in memory.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.db import Database
from server.storage.tables import JOBS_READY_PREDICATE

# The predicate of the partial index ix_jobs_lease_expiry, spelled as it is.
LEASED_PREDICATE = "status = 'leased'"

_COUNTS = (
    "SELECT tenant_id, job_type, count(*) FROM jobs{hint} WHERE {where} "
    "GROUP BY tenant_id, job_type"
)


def waiting_statement(*, sqlite: bool) -> sa.TextClause:
    """Jobs waiting to be leased by (tenant, job type); `sqlite` adds SQLite's index hint."""
    hint = " INDEXED BY ix_jobs_ready" if sqlite else ""
    return sa.text(_COUNTS.format(hint=hint, where=JOBS_READY_PREDICATE))


def leased_statement(*, sqlite: bool) -> sa.TextClause:
    """Leased jobs by (tenant, job type); `sqlite` adds SQLite's index hint."""
    hint = " INDEXED BY ix_jobs_lease_expiry" if sqlite else ""
    return sa.text(_COUNTS.format(hint=hint, where=LEASED_PREDICATE))


async def _counts(db: Database, statement: sa.TextClause) -> list[tuple[tuple[str, str], float]]:
    async with db.read() as conn:
        rows = await conn.execute(statement)
        return [((str(row[0]), str(row[1])), float(row[2])) for row in rows]


async def waiting_jobs(db: Database) -> list[tuple[tuple[str, str], float]]:
    """((tenant, job type), jobs queued, throttled or failed awaiting a retry)."""
    return await _counts(db, waiting_statement(sqlite=db.is_sqlite))


async def leased_jobs(db: Database) -> list[tuple[tuple[str, str], float]]:
    """((tenant, job type), jobs leased to a worker now)."""
    return await _counts(db, leased_statement(sqlite=db.is_sqlite))
