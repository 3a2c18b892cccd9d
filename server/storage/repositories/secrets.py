"""Shared server secrets, created by whichever replica needs one first."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from server.storage.db import Database
from server.storage.tables import ServerSecretRow, table_of

_table = table_of(ServerSecretRow)


async def get_or_create_secret(db: Database, name: str, *, nbytes: int = 32) -> str:
    """Insert a fresh random secret unless one exists, then read the winner.

    Two replicas starting together may both try to insert; the primary key makes
    one of them lose, and both then read the same row.
    """
    async with db.engine.begin() as conn:
        found = (
            await conn.execute(sa.select(_table.c.value).where(_table.c.name == name))
        ).scalar()
        if found is not None:
            return str(found)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(
                sa.insert(_table).values(
                    name=name, value=secrets.token_hex(nbytes), created_at=sa.func.now()
                )
            )
    except sa.exc.IntegrityError:
        pass
    async with db.engine.begin() as conn:
        return str(
            (
                await conn.execute(sa.select(_table.c.value).where(_table.c.name == name))
            ).scalar_one()
        )
