"""The built-in mesh source (server/domain/builtin_sources.py) on SQLite and PostgreSQL:
created once per tenant and project, whatever the concurrency, with the documented
name, type and id."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from server.app import Application
from server.domain.builtin_sources import builtin_source, mesh_source_id
from server.domain.context import CallContext
from server.storage.tables import AuditEntryRow, SourceRow, table_of

_sources = table_of(SourceRow)
_audit = table_of(AuditEntryRow)


def _call(tenant: str, project: str | None = None) -> CallContext:
    return CallContext(method="/test/Builtin", trace_id="t-1", tenant_id=tenant, project_id=project)


async def _rows(app: Application, tenant: str) -> list[sa.Row[object]]:
    async with app.db.read() as conn:
        statement = sa.select(_sources).where(_sources.c.tenant_id == tenant)
        return list((await conn.execute(statement.order_by(_sources.c.name))).all())


async def test_first_use_creates_the_source_and_later_uses_find_it(app: Application) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    now = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    first = await builtin_source(app.store, _call(tenant), now=now)
    again = await builtin_source(app.store, _call(tenant), now=now)
    in_project = await builtin_source(app.store, _call(tenant, "p-1"), now=now)
    assert first == again == mesh_source_id(tenant, None)
    assert in_project == mesh_source_id(tenant, "p-1") != first
    rows = await _rows(app, tenant)
    assert [
        (r.source_id, r.name, r.source_type, r.project_id, r.enabled, r.paused) for r in rows
    ] == [
        (first, "mesh", "mesh", None, True, False),
        (in_project, "mesh:p-1", "mesh", "p-1", True, False),
    ]
    async with app.db.read() as conn:
        audited = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(_audit).where(_audit.c.tenant_id == tenant)
            )
        ).scalar_one()
    assert audited == 0  # the server's own action; the enqueue after it is audited


async def test_concurrent_first_uses_agree_on_one_source(app: Application) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    ids = await asyncio.gather(
        *(builtin_source(app.store, _call(tenant), now=now) for _ in range(8))
    )
    assert set(ids) == {mesh_source_id(tenant, None)}
    assert len(await _rows(app, tenant)) == 1
