"""The dead-letter and Orchestra gauges of /metrics (server/observability/product_gauges.py):
counts read from rows that grow with the work outstanding, never with history.

- dead-letter entries by tenant and category: the cluster counters
  (`deadletter_clusters`, kept in the transaction of every entry change by
  repositories/deadletter.py), one row per (tenant, project, fingerprint), so the read
  costs as many rows as there are distinct errors, however many entries they hold;
  `pending` (waiting for an operator) and `retryable` (pending, retryable) summed over
  the tenant's projects and clusters.
- running Orchestra instances by tenant: the live tokens (`orchestra_tokens`): a
  running instance holds at least one token (parked on a user task, or waiting for a
  job, a timer or a join) and an instance that ended holds none (its tokens are deleted
  in the step that ends it), so counting the distinct instances of the live tokens
  counts the running instances with a read as large as the live work. Ended instances
  (completed, failed, canceled) are history; counting them would read every instance
  ever started, so they are not a gauge.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.db import Database

Samples = list[tuple[tuple[str, ...], float]]

DEADLETTER_STATEMENT = sa.text(
    "SELECT tenant_id, category, sum(pending), sum(retryable) FROM deadletter_clusters "
    "GROUP BY tenant_id, category"
)
RUNNING_INSTANCES_STATEMENT = sa.text(
    "SELECT tenant_id, count(DISTINCT instance_id) FROM orchestra_tokens GROUP BY tenant_id"
)


async def deadletter_counts(db: Database) -> tuple[Samples, Samples]:
    """(pending, retryable) entries by (tenant, category): every category a tenant ever
    had an entry in, 0 once none waits (so an alert's series does not vanish)."""
    async with db.read() as conn:
        rows = (await conn.execute(DEADLETTER_STATEMENT)).all()
    pending: Samples = [((str(r[0]), str(r[1])), float(r[2] or 0)) for r in rows]
    retryable: Samples = [((str(r[0]), str(r[1])), float(r[3] or 0)) for r in rows]
    return pending, retryable


async def running_instances(db: Database) -> Samples:
    """((tenant, "running"), instances running) for each tenant with a running instance."""
    async with db.read() as conn:
        rows = (await conn.execute(RUNNING_INSTANCES_STATEMENT)).all()
    return [((str(row[0]), "running"), float(row[1])) for row in rows]
