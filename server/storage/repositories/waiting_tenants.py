"""Which tenants have jobs of one type waiting to be leased now: what a server-side
consumer (server/upstreams/notify_delivery.py) leases for, one tenant per lease as
the leasing contract is. The ready predicate is spelled as the partial index
`ix_jobs_ready`'s WHERE (as the lease spells it), so the read walks the waiting jobs
only, never the history.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from server.storage.db import Database
from server.storage.tables import JOBS_READY_PREDICATE, JobRow, table_of

_jobs = table_of(JobRow)


async def waiting_tenants(db: Database, job_type: str, now: datetime, limit: int) -> list[str]:
    """Up to `limit` tenants, in id order, with a `job_type` job eligible at `now`."""
    j = _jobs.c
    statement = (
        sa.select(j.tenant_id)
        .where(sa.text(JOBS_READY_PREDICATE), j.job_type == job_type, j.next_eligible_at <= now)
        .distinct()
        .order_by(j.tenant_id)
        .limit(limit)
    )
    async with db.read() as conn:
        return [str(row[0]) for row in await conn.execute(statement)]
