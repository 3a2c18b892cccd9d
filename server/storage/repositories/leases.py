"""Leases in SQL (J2 owns this module; `release_slot` was written first by the jobs
service, which cancels leased jobs, so that there is one function releasing a slot).

Quota accounting (server/storage/tables.py QuotaRow): a job holding a slot names its
quota in `jobs.quota_id`; releasing it clears that column and decrements the quota's
`active` in the caller's transaction, guarded by the column so a slot is released
exactly once and never against a quota re-created since.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.storage.tables import JobRow, QuotaRow, table_of

_jobs = table_of(JobRow)
_quotas = table_of(QuotaRow)


async def release_slot(conn: AsyncConnection, *, job_id: str, quota_id: str) -> bool:
    """Release the slot of `quota_id` that `job_id` holds, in `conn`'s transaction:
    `jobs.quota_id` is cleared only if it still names `quota_id`, and only then is the
    quota's `active` decremented (never below 0). True when a slot was released."""
    cleared = await conn.execute(
        sa.update(_jobs)
        .where(_jobs.c.job_id == job_id, _jobs.c.quota_id == quota_id)
        .values(quota_id=None)
    )
    if cleared.rowcount != 1:
        return False
    await conn.execute(
        sa.update(_quotas)
        .where(_quotas.c.quota_id == quota_id, _quotas.c.active > 0)
        .values(active=_quotas.c.active - 1)
    )
    return True
