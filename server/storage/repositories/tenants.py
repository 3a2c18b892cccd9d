"""Tenants: the isolation boundary; every tenant-scoped row names one."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from server.storage.tables import TenantRow


async def get_tenant(session: AsyncSession, tenant_id: str) -> TenantRow | None:
    return await session.get(TenantRow, tenant_id)


async def count_tenants(session: AsyncSession) -> int:
    result = await session.execute(sa.select(sa.func.count()).select_from(TenantRow))
    return int(result.scalar_one())
