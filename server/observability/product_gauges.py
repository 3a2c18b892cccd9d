"""The dead-letter and Orchestra gauges of /metrics (issue 12 point 3), registered on the
server's `DomainGauges` beside the job gauges (server/app.py), read at most every
`ttl_s` (5 s) by the same cache:

- `orchestrator_deadletter_pending_entries{tenant, category}`: dead-letter entries
  waiting for an operator (status pending);
- `orchestrator_deadletter_pending_retryable_entries{tenant, category}`: those of them
  whose error was retryable (worth a replay);
- `orchestrator_orchestra_instances{tenant, status}`: Orchestra instances by status;
  `status` is `running` (ended instances are history, not a gauge).

Both dead-letter gauges come from the cluster counters, the instances from the live
tokens (server/storage/repositories/product_gauges.py): no read grows with history.
"""

from __future__ import annotations

from server.observability.domain_gauges import DomainGauge, DomainGauges, Samples
from server.storage.db import Database
from server.storage.repositories import product_gauges

DEADLETTER_PENDING = "orchestrator_deadletter_pending_entries"
DEADLETTER_RETRYABLE = "orchestrator_deadletter_pending_retryable_entries"
ORCHESTRA_INSTANCES = "orchestrator_orchestra_instances"


def register_product_gauges(gauges: DomainGauges, db: Database) -> None:
    """Register the three gauges above, reading `db`. Raises ValueError when one of
    them is registered already (a wiring bug)."""

    async def pending() -> Samples:
        return (await product_gauges.deadletter_counts(db))[0]

    async def retryable() -> Samples:
        return (await product_gauges.deadletter_counts(db))[1]

    async def instances() -> Samples:
        return await product_gauges.running_instances(db)

    gauges.register(
        DomainGauge(
            DEADLETTER_PENDING,
            "Dead-letter entries waiting for an operator (status pending).",
            ("tenant", "category"),
            read=pending,
        )
    )
    gauges.register(
        DomainGauge(
            DEADLETTER_RETRYABLE,
            "Dead-letter entries waiting for an operator whose error was retryable.",
            ("tenant", "category"),
            read=retryable,
        )
    )
    gauges.register(
        DomainGauge(
            ORCHESTRA_INSTANCES,
            "Orchestra process instances by status (running: not yet ended).",
            ("tenant", "status"),
            read=instances,
        )
    )
