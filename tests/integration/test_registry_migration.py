"""Migration 0010 (registry_services, registry_snapshots, mesh_peers) on SQLite and
PostgreSQL: it builds exactly what the row classes declare (autogenerate finds nothing
to change) and goes down to 0009 and up again."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from server.storage.db import Database, alembic_config

PG_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TABLES = {"registry_services", "registry_snapshots", "mesh_peers"}


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of its own, migrated to head."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}")
        try:
            await database.migrate()
            yield database
        finally:
            await database.dispose()
        return
    name = f"orch_migrate_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    database = Database(url.render_as_string(hide_password=False))
    try:
        await database.migrate()
        yield database
    finally:
        await database.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _differences(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return [
        diff
        for diff in compare_metadata(context, SQLModel.metadata)
        if any(f"'{table}'" in repr(diff) or f"name='{table}'" in repr(diff) for table in TABLES)
    ]


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _alembic(connection: sa.Connection, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_differences) == []


async def test_down_to_0009_and_up_again(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0009")
        assert not await conn.run_sync(_tables) & TABLES
        await conn.run_sync(_alembic, "upgrade", "head")
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_differences) == []
