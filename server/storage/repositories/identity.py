"""Named queries over the identity tables: clients, signing keys, revoked tokens.

No commits here: mutations run inside the caller's `Database.transaction()`. The
read paths that run on every token check (revocations, disabled clients, keys)
use SQLAlchemy Core on a plain connection, with no ORM identity map.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from server.storage.tables import (
    OAuthClientRow,
    RevokedTokenRow,
    SigningKeyRow,
    TenantRow,
    table_of,
)

_revoked = table_of(RevokedTokenRow)
_clients = table_of(OAuthClientRow)
_keys = table_of(SigningKeyRow)

KEY_CURRENT = "current"
KEY_PREVIOUS = "previous"
KEY_RETIRED = "retired"


# --- clients -------------------------------------------------------------------------


async def get_client(session: AsyncSession, client_id: str) -> OAuthClientRow | None:
    return await session.get(OAuthClientRow, client_id)


async def list_clients(session: AsyncSession) -> Sequence[OAuthClientRow]:
    query = select(OAuthClientRow).order_by(col(OAuthClientRow.client_id))
    return (await session.exec(query)).all()


async def missing_tenants(session: AsyncSession, tenant_ids: Sequence[str]) -> list[str]:
    """The ids among `tenant_ids` that name no tenant, in the order given."""
    if not tenant_ids:
        return []
    query = select(TenantRow.tenant_id).where(col(TenantRow.tenant_id).in_(tenant_ids))
    found = set((await session.exec(query)).all())
    return [tenant for tenant in tenant_ids if tenant not in found]


# --- signing keys --------------------------------------------------------------------


async def published_keys(conn: AsyncConnection) -> Sequence[sa.Row[tuple[SigningKeyRow]]]:
    """Current and previous keys, newest first (the first is the signing key)."""
    query = (
        sa.select(_keys)
        .where(_keys.c.state.in_((KEY_CURRENT, KEY_PREVIOUS)))
        .order_by((_keys.c.state == KEY_CURRENT).desc(), _keys.c.created_at.desc(), _keys.c.kid)
    )
    return (await conn.execute(query)).all()


async def count_current_keys(session: AsyncSession) -> int:
    query = (
        select(sa.func.count())
        .select_from(SigningKeyRow)
        .where(col(SigningKeyRow.state) == KEY_CURRENT)
    )
    return int((await session.exec(query)).one())


async def demote_keys(session: AsyncSession, *, now: datetime) -> None:
    """previous -> retired, then current -> previous: one rotation step."""
    await session.exec(
        sa.update(_keys)
        .where(_keys.c.state == KEY_PREVIOUS)
        .values(state=KEY_RETIRED, retired_at=now)
    )
    await session.exec(
        sa.update(_keys).where(_keys.c.state == KEY_CURRENT).values(state=KEY_PREVIOUS)
    )


# --- revocations ---------------------------------------------------------------------


async def is_revoked(session: AsyncSession, jti: str) -> bool:
    return await session.get(RevokedTokenRow, jti) is not None


async def prune_revocations(session: AsyncSession, *, before: datetime) -> None:
    """Forget revocations of tokens that expired before `before`: they fail `exp` anyway."""
    await session.exec(sa.delete(_revoked).where(_revoked.c.expires_at < before))


async def revocation_state(conn: AsyncConnection, *, now: datetime) -> tuple[set[str], set[str]]:
    """(jtis of revoked, unexpired tokens; ids of disabled clients), in one round trip."""
    query = sa.union_all(
        sa.select(sa.literal("t").label("kind"), _revoked.c.jti.label("value")).where(
            _revoked.c.expires_at > now
        ),
        sa.select(sa.literal("c").label("kind"), _clients.c.client_id.label("value")).where(
            _clients.c.disabled == sa.true()
        ),
    )
    revoked: set[str] = set()
    disabled: set[str] = set()
    for kind, value in (await conn.execute(query)).all():
        (revoked if kind == "t" else disabled).add(value)
    return revoked, disabled
