"""Where the database's schema stands against this build's migrations (readiness).

`head_revisions()` are the newest Alembic revisions of `server/storage/migrations`
(read once; the scripts do not change while serving); `applied_revisions(db)` reads
the `alembic_version` table, which is also the readiness probe's database round trip.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from server.storage.db import Database, alembic_config

_VERSIONS = sa.table("alembic_version", sa.column("version_num", sa.String))


@functools.cache
def head_revisions() -> tuple[str, ...]:
    """The head revision ids of this build's migration scripts, sorted."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


async def applied_revisions(db: Database) -> tuple[str, ...]:
    """The revision ids recorded in `alembic_version`, sorted; () before any migration.
    Raises what the driver raises when the database cannot be reached."""
    async with db.read() as conn:
        exists = await conn.run_sync(lambda sync: sa.inspect(sync).has_table("alembic_version"))
        if not exists:
            return ()
        rows = await conn.execute(sa.select(_VERSIONS.c.version_num))
        return tuple(sorted(str(row[0]) for row in rows))


async def ping(db: Database) -> None:
    """One `SELECT 1` round trip; raises when the database cannot be reached."""
    async with db.read() as conn:
        await conn.execute(sa.text("SELECT 1"))
