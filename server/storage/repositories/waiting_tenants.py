"""What a server-side consumer of jobs (server/upstreams/notify_delivery.py) reads
besides the lease:

- which tenants have jobs of one type waiting to be leased now, since the leasing
  contract leases for one tenant at a time. The ready predicate is spelled as the
  partial index `ix_jobs_ready`'s WHERE (as the lease spells it), so the read walks
  the waiting jobs only, never the history;
- the trace id of the call that enqueued each job (its `job.enqueued` event, read by
  `ix_events_tenant_subject_id`), which the consumer passes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from server.storage.db import Database
from server.storage.tables import JOBS_READY_PREDICATE, EventRow, JobRow, table_of

_jobs = table_of(JobRow)
_events = table_of(EventRow)


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


async def enqueue_traces(db: Database, tenant_id: str, job_ids: Sequence[str]) -> dict[str, str]:
    """Job id -> the trace id of the call that enqueued it, for those of `job_ids` whose
    `job.enqueued` event is kept and carries one."""
    if not job_ids:
        return {}
    e = _events.c
    statement = sa.select(e.subject, e.trace_id).where(
        e.tenant_id == tenant_id,
        e.subject.in_([f"jobs/{job_id}" for job_id in job_ids]),
        e.type == "job.enqueued",
        e.trace_id.is_not(None),
    )
    async with db.read() as conn:
        rows = await conn.execute(statement)
        return {str(row[0]).removeprefix("jobs/"): str(row[1]) for row in rows}
