"""Migration 0010 (registry_services, registry_snapshots, mesh_peers) on SQLite and
PostgreSQL: it builds exactly what the row classes declare (autogenerate finds nothing
to change) and goes down to 0009 and up again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.storage.db import Database
from tests.conftest import BACKENDS
from tests.support.migrations import differences, migrated, run_alembic, table_names

TABLES = {"registry_services", "registry_snapshots", "mesh_peers"}


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of its own, migrated to head."""
    async with migrated(request.param, tmp_path) as database:
        yield database


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(table_names) >= TABLES
        assert await conn.run_sync(differences, TABLES) == []


async def test_down_to_0009_and_up_again(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(run_alembic, "downgrade", "0009")
        assert not await conn.run_sync(table_names) & TABLES
        await conn.run_sync(run_alembic, "upgrade", "head")
        assert await conn.run_sync(table_names) >= TABLES
        assert await conn.run_sync(differences, TABLES) == []
