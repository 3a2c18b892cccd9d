"""A database of a test's own, on the same backend as the session's.

A server started with the session database shares its rows with every other test:
loops that act on whatever they find (notification delivery leasing every queued
`notify.consolidation` job, the reaper, the scheduler) then act on other tests' rows.
A test that counts what such a loop does gives its server a database of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.conftest import _create_pg_database, _drop_pg_database


@asynccontextmanager
async def database_of_its_own(like: str, directory: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database on the backend of `like` (a SQLite file in
    `directory`, or a new PostgreSQL database dropped afterwards); the server that
    opens it migrates it."""
    if like.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{directory / f'own-{uuid.uuid4().hex[:8]}.db'}"
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)
