"""Migration 0006 (deadletter_entries, deadletter_clusters) on SQLite and PostgreSQL:
exactly what the row classes declare (autogenerate finds nothing to change), the
pending entries' partial index with its predicate, the stats' oldest-pending read and
the replay sweep served by it on PostgreSQL, a job with one entry at most, and a way
down and up again."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from server.storage.db import Database, alembic_config
from server.storage.tables import DEADLETTER_PENDING_PREDICATE, DeadLetterEntryRow, table_of

PG_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TABLES = {"deadletter_entries", "deadletter_clusters"}
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


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


def _index_sql(connection: sa.Connection) -> dict[str, str]:
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'deadletter_entries'"
            )
        )
    else:
        rows = connection.execute(
            sa.text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name = 'deadletter_entries' AND sql IS NOT NULL"
            )
        )
    return {str(name): str(sql) for name, sql in rows}


def _entry(entry_id: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "entry_id": entry_id,
        "tenant_id": "t-1",
        "job_id": f"job-{entry_id}",
        "job_type": "scan",
        "source_id": "s-1",
        "category": "timeout",
        "error_code": "T",
        "message": "timeout",
        "fingerprint": "0123456789abcdef",
        "retryable": True,
        "attempts": 1,
        "status": "pending",
        "first_failed_at": T0,
        "last_failed_at": T0,
        "replay_count": 0,
        "updated_at": T0,
    }
    row.update(values)
    return row


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_differences) == []
        indexes = await conn.run_sync(_index_sql)
    expected = (
        "WHERE ((status)::text = 'pending'::text)"
        if db.engine.dialect.name == "postgresql"
        else f"WHERE {DEADLETTER_PENDING_PREDICATE}"
    )
    assert indexes["ix_deadletter_entries_pending"].endswith(expected)
    assert "(tenant_id, last_failed_at, entry_id)" in indexes["ix_deadletter_entries_pending"]


async def test_a_job_has_one_entry_at_most(db: Database) -> None:
    entries = table_of(DeadLetterEntryRow)
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(entries), [_entry("e-1")])
    with pytest.raises(sa.exc.IntegrityError):
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(entries), [_entry("e-2", job_id="job-e-1")])


@pytest.mark.parametrize(
    "db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_oldest_pending_and_the_sweep_read_the_pending_index(db: Database) -> None:
    statements = [
        "SELECT last_failed_at FROM deadletter_entries WHERE tenant_id = 't-1'"
        f" AND {DEADLETTER_PENDING_PREDICATE}"
        " ORDER BY tenant_id, last_failed_at, entry_id LIMIT 1",
        "SELECT * FROM deadletter_entries WHERE tenant_id = 't-1'"
        f" AND {DEADLETTER_PENDING_PREDICATE} AND (last_failed_at, entry_id) >"
        " ('2026-11-30T08:00:00Z', 'e') ORDER BY last_failed_at, entry_id LIMIT 501",
    ]
    for statement in statements:
        async with db.engine.begin() as conn:
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = (await conn.execute(sa.text("EXPLAIN " + statement))).scalars().all()
        text = "\n".join(plan)
        assert "ix_deadletter_entries_pending" in text, text
        assert "Sort" not in text, text


async def test_the_migration_goes_down_and_up(db: Database) -> None:
    def downgrade(connection: sa.Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0005")

    async with db.engine.begin() as conn:
        await conn.run_sync(downgrade)
        assert TABLES.isdisjoint(await conn.run_sync(_tables))
    await db.migrate()
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_differences) == []
