"""The job gauges of /metrics (server/observability/domain_gauges.py): counts an index
answers, never a scan of the jobs table.

- jobs waiting to be leased, by tenant and job type: the WHERE is spelled exactly as
  the partial index `ix_jobs_ready` is (`JOBS_READY_PREDICATE`), whose leading columns
  are (tenant_id, job_type): SQLite answers from the index alone, in group order
  (`USING COVERING INDEX ix_jobs_ready`), PostgreSQL with an index(-only) scan or,
  when most rows wait, a scan it judges cheaper. The cost grows with the jobs
  waiting, not with the history the table holds.
- leased jobs, by tenant and job type: the partial index `ix_jobs_lease_expiry`
  (status = 'leased') finds them; there are as many as workers hold leases.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.db import Database
from server.storage.tables import JOBS_READY_PREDICATE, JobRow, table_of

_JOBS = table_of(JobRow)


def waiting_statement() -> sa.Select[str, str, int]:
    return (
        sa.select(_JOBS.c.tenant_id, _JOBS.c.job_type, sa.func.count())
        .where(sa.text(JOBS_READY_PREDICATE))
        .group_by(_JOBS.c.tenant_id, _JOBS.c.job_type)
    )


def leased_statement() -> sa.Select[str, str, int]:
    return (
        sa.select(_JOBS.c.tenant_id, _JOBS.c.job_type, sa.func.count())
        .where(sa.text("status = 'leased'"))
        .group_by(_JOBS.c.tenant_id, _JOBS.c.job_type)
    )


async def _counts(
    db: Database, statement: sa.Select[str, str, int]
) -> list[tuple[tuple[str, str], float]]:
    async with db.read() as conn:
        rows = await conn.execute(statement)
        return [((str(row[0]), str(row[1])), float(row[2])) for row in rows]


async def waiting_jobs(db: Database) -> list[tuple[tuple[str, str], float]]:
    """((tenant, job type), jobs queued, throttled or failed awaiting a retry)."""
    return await _counts(db, waiting_statement())


async def leased_jobs(db: Database) -> list[tuple[tuple[str, str], float]]:
    """((tenant, job type), jobs leased to a worker now)."""
    return await _counts(db, leased_statement())
