"""`serve --dev` bootstrap: on an empty database, a demo tenant with a few sources and
one all-scopes client (with `access orchestra api`) whose secret is printed once."""

from __future__ import annotations

from server.domain import sources
from server.domain.context import CallContext
from server.identity.authorization_server.clients import CreatedClient, create_client
from server.identity.scopes import PERMISSIONS, SCOPES
from server.storage.db import Database
from server.storage.repositories.tenants import count_tenants
from server.storage.store import SqlStore
from server.storage.tables import TenantRow

DEMO_TENANT = "demo"
DEMO_CLIENT = "demo-client"
_DEMO_SOURCES = (
    ("nightly-scan", "scheduler"),
    ("registry-webhook", "webhook"),
    ("manual-requests", "manual"),
)


async def bootstrap(db: Database) -> CreatedClient | None:
    """Seed the demo tenant and client once; None when the database already had tenants."""
    async with db.transaction() as session:
        if await count_tenants(session) > 0:
            return None
        session.add(TenantRow(tenant_id=DEMO_TENANT, display_name="Demo tenant"))
    call = CallContext(
        # Audited as the call it stands for: "sources.register".
        method="/orchestrator.jobengine.v1.SourcesService/RegisterSource",
        trace_id="dev-bootstrap",
        actor="orchestrator serve --dev",
        tenant_id=DEMO_TENANT,
        operator_reason="development bootstrap",
    )
    store = SqlStore(db)
    for name, source_type in _DEMO_SOURCES:
        await sources.register_source(store, call, name=name, source_type=source_type, enabled=True)
    return await create_client(
        db,
        client_id=DEMO_CLIENT,
        display_name="Demo client (serve --dev)",
        tenant=DEMO_TENANT,
        scopes=SCOPES,
        permissions=PERMISSIONS,
    )
