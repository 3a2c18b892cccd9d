"""The PostgreSQL pool's statement cache (server/storage/db.py): each connection keeps
up to PREPARED_STATEMENTS prepared statements, unless the database URL says otherwise
(`?prepared_statement_cache_size=0` turns it off, as PgBouncer in transaction mode
needs). Read from the pooled connection SQLAlchemy's asyncpg adapter hands out."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from server.storage.db import PREPARED_STATEMENTS, Database
from tests.conftest import PG_ADMIN_URL

PG = sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg").render_as_string(False)


async def _capacity(url: str) -> int:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            adapted: Any = (await conn.get_raw_connection()).dbapi_connection
            cache = adapted._prepared_statement_cache  # the adapter's LRU, None when off
            return 0 if cache is None else int(cache.capacity)
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("query", "capacity"),
    [
        ("", PREPARED_STATEMENTS),
        ("?prepared_statement_cache_size=0", 0),
        ("?prepared_statement_cache_size=7", 7),
    ],
)
@pytest.mark.postgres
async def test_the_statement_cache_is_ours_unless_the_url_sets_it(
    query: str, capacity: int
) -> None:
    assert await _capacity(PG + query) == capacity
